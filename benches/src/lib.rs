//! Shared helpers for herd's benches (the benches themselves are in `benches/`).
