//! socketfleet gateway (being built).
