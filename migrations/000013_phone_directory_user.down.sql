DROP INDEX phone_directory_user_idx;
