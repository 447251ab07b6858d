DROP TABLE IF EXISTS notification_settings;
DROP TABLE IF EXISTS user_settings;
DROP TABLE IF EXISTS user_auth;
DROP TABLE IF EXISTS user_profiles;
DROP TABLE IF EXISTS users;
