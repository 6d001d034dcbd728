"""Run the delivered notifier until SIGTERM."""

from delivered_notifier import spec
from wharf_common.runtime import main
from wharf_common.settings import ServiceSettings

main(spec(), ServiceSettings(service_name="delivered-notifier"))
