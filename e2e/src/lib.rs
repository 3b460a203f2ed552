//! socketfleet end-to-end harness (being built).
