"""Tests run on 8 forced CPU devices so that sharding is exercised everywhere."""
import os

# XLA:CPU aborts the process (LOG(FATAL)) when the 8 device threads of a collective do not all reach
# it within its rendezvous timeouts; on a loaded 2-core machine (load average 20 seen) one thread can
# lag longer than that, and the whole suite died in a hypergraph all-gather. 10 minutes each.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    " --xla_cpu_collective_timeout_seconds=600 --xla_cpu_collective_call_terminate_timeout_seconds=600"
).strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jax  # noqa: E402  (after XLA_FLAGS on purpose)

jax.config.update("jax_default_matmul_precision", "highest")
