"""Settings the whole test session shares (tests/conftest.py applies them; no JAX import here,
so they are in place before JAX starts)."""

# XLA:CPU compiles the tests' programs with LLVM's cheapest settings: compiling, not running,
# is most of a test's time here. Runs that mostly execute (long CLI trainings) go without them
# (cli_runs.environment(optimized=True)). Every comparison a test makes is between programs
# compiled alike, or against a tolerance; runs outside the tests use XLA's defaults.
FAST_COMPILE_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
