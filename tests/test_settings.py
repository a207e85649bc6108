"""parse_method_args: unknown keys, type coercion, choices and ranges, and each method's Settings
against its config file (every key set there, the old error conditions still raise)."""
from __future__ import annotations

import dataclasses
import importlib

import ml_collections
import pytest

from adapt.core.config import apply_overrides, load_config
from adapt.core.settings import check_at_least, check_choice, coerce, parse_method_args

METHODS = ("zero_shot", "laplacian", "zlap", "hypergraph", "nola", "pseudolabel")


@dataclasses.dataclass(frozen=True)
class Toy:
    mode: str
    k: int | None
    sizes: tuple[int, ...]
    names: tuple
    rate: float
    on: bool
    block: int = 1024

    def __post_init__(self):
        check_choice("mode", self.mode, ("fast", "exact"))
        check_at_least("rate", self.rate, 0.0)


def _args(**changes):
    args = dict(mode="fast", k=None, sizes=[1, 2], names=["a"], rate=1, on=True) | changes
    return ml_collections.ConfigDict(args)


def test_unknown_key_names_the_nearest():
    with pytest.raises(ValueError, match=r"unknown toy method_args key 'sises'; did you mean 'sizes'\?"):
        parse_method_args(Toy, _args(sises=[3]), "toy")
    with pytest.raises(ValueError, match="did you mean 'block'"):
        parse_method_args(Toy, _args(blok=3), "toy")
    # keys a job reads itself pass through unchecked, and are not handed to the dataclass
    assert parse_method_args(Toy, _args(save_maps=True), "toy", job_keys=("save_maps",)).mode == "fast"


def test_values_are_coerced_to_the_field_types():
    s = parse_method_args(Toy, _args(k="7", sizes=[1, "2"], rate=3, on="false"), "toy")
    assert s == Toy("fast", 7, (1, 2), ("a",), 3.0, False, 1024)
    assert isinstance(s.rate, float) and isinstance(s.sizes, tuple) and isinstance(s.names, tuple)
    assert parse_method_args(Toy, _args(k=None), "toy").k is None  # an optional int stays None
    assert parse_method_args(Toy, _args(k=3.0, block=2048), "toy").k == 3
    assert coerce("estimate", int | str, "k") == "estimate" and coerce("5", int | str, "k") == 5
    assert coerce([1, 2.5], tuple[float, ...], "w") == (1.0, 2.5)
    for bad, match in ((dict(k=2.5), "method_args.k must be int or None"),
                       (dict(sizes="1,2"), "method_args.sizes must be a list"),
                       (dict(sizes=[1, "x"]), r"method_args.sizes\[1\] must be an integer"),
                       (dict(rate="fast"), "method_args.rate must be a number"),
                       (dict(on="maybe"), "method_args.on must be a boolean"),
                       (dict(mode=3), "method_args.mode must be str"),
                       (dict(rate=True), "method_args.rate must be a number")):
        with pytest.raises(ValueError, match=match):
            parse_method_args(Toy, _args(**bad), "toy")


def test_choices_ranges_and_missing_keys_raise():
    with pytest.raises(ValueError, match=r"method_args.mode must be one of fast \| exact, not 'slow'"):
        parse_method_args(Toy, _args(mode="slow"), "toy")
    with pytest.raises(ValueError, match="method_args.rate must be >= 0.0, got -1.0"):
        parse_method_args(Toy, _args(rate=-1), "toy")
    args = _args()
    del args["on"]
    with pytest.raises(ValueError, match="toy needs method_args.on"):
        parse_method_args(Toy, args, "toy")
    assert parse_method_args(Toy, _args(), "toy").block == 1024  # a field with a default may be left out


def _config(method):
    return load_config(f"configs/{method}.py")


@pytest.mark.parametrize("method", METHODS)
def test_the_config_sets_every_field_and_round_trips(method):
    """The config file is the one source of the values: it sets exactly the Settings' fields, and
    parsing keeps every value (lists become tuples)."""
    module = importlib.import_module(f"methods.{method}")
    args = _config(method).method_args
    fields = [f.name for f in dataclasses.fields(module.Settings)]
    assert sorted(fields) == sorted(args.keys())
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(module.Settings))
    s = parse_method_args(module.Settings, args, method)
    for name, value in args.items():
        got = getattr(s, name)
        assert (list(got) if isinstance(got, tuple) else got) == value and type(got) is not list
    assert module.make(_config(method)).name == method


def test_overrides_on_the_command_line_reach_the_settings_typed():
    from methods import hypergraph, laplacian

    config = apply_overrides(_config("laplacian"), ["method_args.knn=5", "method_args.lam=3"])
    s = parse_method_args(laplacian.Settings, config.method_args, "laplacian")
    assert s.knn == 5 and s.lam == 3.0 and isinstance(s.lam, float)
    config = apply_overrides(_config("hypergraph"), ["method_args.view_priors=1,2"])
    assert parse_method_args(hypergraph.Settings, config.method_args, "hypergraph").view_priors == (1.0, 2.0)


OLD_ERRORS = [  # (method, a bad value, the message it must raise): the checks make() had before Settings
    ("zero_shot", dict(head="linear"), "method_args.head must be one of auto | cosine | class_map"),
    ("laplacian", dict(variant="lapshot"), "method_args.variant must be one of lshot | slk"),
    ("laplacian", dict(prototypes="support"), "method_args.prototypes must be one of text | pseudo | rectified"),
    ("laplacian", dict(slk_step="modes"), "method_args.slk_step must be one of kmeans | ms"),
    ("laplacian", dict(knn=1), "method_args.knn must be >= 2"),
    ("zlap", dict(k=1), "method_args.k must be >= 2"),
    ("zlap", dict(solver="lu"), "method_args.solver must be one of series | cg"),
    ("zlap", dict(classifier="proxy"), "method_args.classifier must be one of"),
    ("hypergraph", dict(prototypes="proxy"), "method_args.prototypes must be one of"),
    ("hypergraph", dict(propagations=0), "method_args.propagations must be >= 1"),
    ("nola", dict(descriptions="cupl"), "method_args.descriptions must be one of wordnet | none"),
    ("pseudolabel", dict(strategy="pl"), "method_args.strategy must be one of fpl | ifpl | grip"),
    ("pseudolabel", dict(prompt="deep"), "method_args.prompt must be one of textual | visual | multimodal"),
    ("pseudolabel", dict(setting="fsl"), "method_args.setting must be one of ul | ssl"),
]


@pytest.mark.parametrize("method,bad,message", OLD_ERRORS)
def test_each_method_still_refuses_what_it_refused(method, bad, message):
    module = importlib.import_module(f"methods.{method}")
    config = _config(method)
    with config.unlocked():
        config.method_args.update(bad)
    with pytest.raises(ValueError, match=message):
        module.make(config)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_names_the_nearest_key(method):
    config = _config(method)
    key = next(iter(config.method_args.keys()))
    with config.unlocked():
        config.method_args[key + "x"] = config.method_args[key]
    module = importlib.import_module(f"methods.{method}")
    with pytest.raises(ValueError, match=f"unknown {method} method_args key '{key}x'; did you mean '{key}'"):
        module.make(config)
