-- Runs once, when the mysql service initialises an empty data volume, after the image's
-- entrypoint created the user MYSQL_USER (binlake) with the password from its secret.
-- The privileges `binlake check` requires on MySQL (README "Server prerequisites"):
GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'binlake'@'%';
-- The database captured by deploy/docker/binlake.toml ([capture] include = ["shop"]).
CREATE DATABASE IF NOT EXISTS shop;
