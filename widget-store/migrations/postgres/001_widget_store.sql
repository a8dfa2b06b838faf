CREATE TABLE IF NOT EXISTS products (
  product_id SERIAL PRIMARY KEY,
  product VARCHAR(255) UNIQUE,
  description TEXT,
  inventory INT,
  price DECIMAL(10,2)
);
CREATE TABLE IF NOT EXISTS orders (
  order_id SERIAL PRIMARY KEY,
  order_status INT,
  last_update_time TIMESTAMP DEFAULT now(),
  progress_remaining INT DEFAULT 10
);
INSERT INTO products (product_id, product, description, inventory, price)
VALUES (1, 'Premium Quality Widget', 'Enhance your productivity with our top-rated widgets!', 100, 99.99)
ON CONFLICT DO NOTHING;
SELECT setval(pg_get_serial_sequence('products', 'product_id'), GREATEST((SELECT MAX(product_id) FROM products), 1));
