// Test-only plugin "test_no_symbol": a valid shared library that exports none of the plugin
// entry points (sdxlhost_abi_version, ...).
extern "C" __attribute__((visibility("default"))) int sdxlhost_test_not_a_plugin() { return 7; }
