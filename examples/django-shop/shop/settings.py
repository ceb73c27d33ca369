"""Settings from the variables minicloud injects (MYSQL_*, MINICLOUD_*)."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "minicloud-example-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]  # the gateway decides which host reaches this env
INSTALLED_APPS = ["shop"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.mysql",  # mysqlclient
        "HOST": os.environ.get("MYSQL_HOST", "localhost"),
        "PORT": os.environ.get("MYSQL_PORT", "3306"),
        "USER": os.environ.get("MYSQL_USER", ""),
        "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
        "NAME": os.environ.get("MYSQL_DATABASE", ""),
        "OPTIONS": {"charset": "utf8mb4"},
    }
}
LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
