import pytest

from adapt.core.config import ConfigError, apply_overrides, load_config


def test_overrides_parse_types():
    c = load_config("configs/zero_shot.py:fashion_mnist")
    apply_overrides(c, ["pool.limit=100", "pool.invert=true", "embed.batch_size=32",
                        "classes.names=cat,dog", "prompts.beta=1", "model.path=/x"])
    assert c.pool.limit == 100 and c.pool.invert is True and c.embed.batch_size == 32
    assert list(c.classes.names) == ["cat", "dog"]
    assert c.prompts.beta == 1.0 and isinstance(c.prompts.beta, float)
    assert c.model.path == "/x"
    apply_overrides(c, ["classes.names=['a b', 'c']", "prompts.templates=['x {}', 'y {}']"])
    assert list(c.classes.names) == ["a b", "c"] and list(c.prompts.templates) == ["x {}", "y {}"]


def test_misspelled_key_names_nearest():
    c = load_config("configs/zero_shot.py")
    with pytest.raises(ConfigError, match=r"unknown config key 'pool.limt'.*'pool.limit'"):
        apply_overrides(c, ["pool.limt=3"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(c, ["pool.limit"])
    with pytest.raises(ConfigError, match="boolean"):
        apply_overrides(c, ["pool.invert=maybe"])


def test_locked_config_rejects_new_attributes():
    c = load_config("configs/zero_shot.py")
    with pytest.raises(AttributeError):
        c.pool.limt = 3


def test_unknown_preset_and_missing_file():
    with pytest.raises(ValueError, match="unknown pool preset"):
        load_config("configs/zero_shot.py:nope")
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/none.py")
