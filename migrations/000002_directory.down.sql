DROP TABLE IF EXISTS email_directory;
DROP TABLE IF EXISTS phone_directory;
