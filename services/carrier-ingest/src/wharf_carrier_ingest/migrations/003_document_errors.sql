-- The last FTP connection failure of a carrier-documents job, shown while it
-- runs, so a server that cannot be reached does not look like missing files.
ALTER TABLE document_jobs ADD COLUMN last_error text;
