-- Money: a transfer or cash-in may name its recipient by user id, and the id alone does not say
-- which region the user is homed in. The GLOBAL phone directory already maps every user to a
-- home region; this index lets it answer by user id too, read locally in every region, so no
-- regional table is ever queried without its region (design.md, Regions and PII). Sign-up
-- writes the directory row already, so no second GLOBAL table has to be kept in step.
CREATE INDEX phone_directory_user_idx ON phone_directory (user_id);
