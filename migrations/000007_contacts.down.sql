DROP TABLE IF EXISTS contact_sync_status;
DROP TABLE IF EXISTS contacts_with_accounts;
