import re

import pytest

from server import config


def test_defaults_are_embedded_mode():
    settings = config.load({})
    assert settings.embedded
    assert settings.port == 8888
    assert settings.sandbox == "local"
    assert settings.sqlalchemy_url.startswith("sqlite:///")
    assert settings.sqlalchemy_url.endswith("/.lessonserver/lessonserver.db")


def test_values_are_parsed():
    settings = config.load({"LS_PORT": "9000", "LS_REDIS_URL": "redis://127.0.0.1:6379/0",
                            "LS_DATABASE_URL": "postgresql://u:p@db/ls", "LS_SANDBOX": "docker",
                            "LS_RUN_TIMEOUT": "2.5", "LS_SECURE_COOKIES": "true"})
    assert (settings.port, settings.sandbox, settings.run_timeout) == (9000, "docker", 2.5)
    assert not settings.embedded and settings.secure_cookies
    assert settings.sqlalchemy_url == "postgresql://u:p@db/ls"


def test_settings_are_frozen():
    settings = config.load({})
    with pytest.raises(AttributeError):
        settings.port = 1


@pytest.mark.parametrize("env, message", [
    ({"LS_PORT": "http"}, "LS_PORT: 'http' is not a whole number"),
    ({"LS_PORT": "-1"}, "LS_PORT: -1 is below the minimum of 0"),
    ({"LS_DATABASE_URL": "mysql://x/y"}, "LS_DATABASE_URL: 'mysql://x/y' is not a URL"),
    ({"LS_DATABASE_URL": "not a url"}, "LS_DATABASE_URL:"),
    ({"LS_REDIS_URL": "http://x"}, "LS_REDIS_URL:"),
    ({"LS_SANDBOX": "vm"}, "LS_SANDBOX: 'vm' is not one of local, docker"),
    ({"LS_RUN_TIMEOUT": "-3"}, "LS_RUN_TIMEOUT: -3.0 is below the minimum"),
    ({"LS_RUN_TIMEOUT": "nan"}, "LS_RUN_TIMEOUT:"),
    ({"LS_MEMORY_MB": "8"}, "LS_MEMORY_MB: 8 is below the minimum of 32"),
    ({"LS_SECURE_COOKIES": "maybe"}, "LS_SECURE_COOKIES: 'maybe' is not a boolean"),
    ({"LS_LOG_LEVEL": "loud"}, "LS_LOG_LEVEL:"),
    ({"LS_POOL_SIZE": "9", "LS_MAX_KERNELS": "3"}, "LS_POOL_SIZE:"),
])
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(config.ConfigError) as info:
        config.load(env)
    assert str(info.value).startswith(message)


def test_every_setting_is_documented():
    rows = config.describe()
    assert {row[0] for row in rows} == {f.env for f in config.FIELDS}
    assert all(row[2] for row in rows)


def test_billing_is_configured_only_with_key_price_and_webhook_secret():
    complete = {"LS_STRIPE_SECRET_KEY": "sk_test_1", "LS_STRIPE_PRICE": "price_1",
                "LS_STRIPE_WEBHOOK_SECRET": "whsec_1"}
    settings = config.load({**complete, "LS_BILLING_GRACE_DAYS": "7",
                            "LS_STRIPE_API_BASE": "http://127.0.0.1:8420"})
    assert settings.billing_configured
    assert (settings.billing_grace_days, settings.stripe_api_base) == (7.0, "http://127.0.0.1:8420")
    assert config.load({}).billing_grace_days == 3.0 and config.load({}).stripe_api_base is None
    for missing in complete:
        assert not config.load({k: v for k, v in complete.items() if k != missing}).billing_configured


@pytest.mark.parametrize("env, message", [
    ({"LS_BILLING_GRACE_DAYS": "-1"}, "LS_BILLING_GRACE_DAYS: -1.0 is below the minimum of 0"),
    ({"LS_STRIPE_API_BASE": "ftp://x"}, "LS_STRIPE_API_BASE: 'ftp://x' is not a URL with scheme http or https"),
])
def test_bad_billing_settings_name_the_variable(env, message):
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.load(env)
