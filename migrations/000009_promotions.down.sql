DROP TABLE IF EXISTS promotion_views;
DROP TABLE IF EXISTS promotions;
