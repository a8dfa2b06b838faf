CREATE TABLE IF NOT EXISTS products (
  product_id INTEGER PRIMARY KEY AUTOINCREMENT,
  product VARCHAR(255) UNIQUE,
  description TEXT,
  inventory INT,
  price DECIMAL(10,2)
);
CREATE TABLE IF NOT EXISTS orders (
  order_id INTEGER PRIMARY KEY AUTOINCREMENT,
  order_status INT,
  last_update_time TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  progress_remaining INT DEFAULT 10
);
INSERT INTO products (product_id, product, description, inventory, price)
VALUES (1, 'Premium Quality Widget', 'Enhance your productivity with our top-rated widgets!', 100, 99.99)
ON CONFLICT DO NOTHING;
