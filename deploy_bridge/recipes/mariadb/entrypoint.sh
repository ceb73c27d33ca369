#!/bin/sh
# First start on an empty volume: create the system tables, the app's database and user.
# Later starts (restart, rebuild after `env destroy` without --with-data) find the data as it was.
set -eu
: "${MYSQL_DATABASE:?}" "${MYSQL_USER:?}" "${MYSQL_PASSWORD:?}"
datadir=/var/lib/mysql
chown -R mysql:mysql "$datadir" /run/mysqld
init_args=""
if [ ! -d "$datadir/mysql" ]; then
    echo "minicloud-db: initialising a new database in $datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db --auth-root-authentication-method=socket >/dev/null
    init=/run/mysqld/init.sql
    cat > "$init" <<SQL
CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$MYSQL_USER'@'%' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL PRIVILEGES ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_USER'@'%';
FLUSH PRIVILEGES;
SQL
    chown mysql:mysql "$init"
    chmod 600 "$init"
    init_args="--init-file=$init"
fi
exec mariadbd --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --skip-name-resolve \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci $init_args
