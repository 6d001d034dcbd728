"""Run the delivered notifier until SIGTERM."""

from delivered_notifier import NotifierSettings, spec
from wharf_common.runtime import main

main(spec(), NotifierSettings())
