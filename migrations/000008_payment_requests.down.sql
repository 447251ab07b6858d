DROP TABLE IF EXISTS payment_requests;
