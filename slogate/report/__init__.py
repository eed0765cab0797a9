"""Writers: summary CSV, per-case JSON (vLLM's keys), per-request JSONL, Allure."""
