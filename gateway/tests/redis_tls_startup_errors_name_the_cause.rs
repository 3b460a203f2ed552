//! `socketfleet-gateway` with a rediss:// URL stops at startup, within the connection timeout, with
//! a message that names the cause. The cases: the port serves plain Redis without TLS (cluster and
//! standalone mode), a CA other than --redis-ca-file signed the server's certificate, no
//! --redis-ca-file is given and the built-in webpki roots do not trust the private CA, the server
//! requires a client certificate, and --redis-ca-file is missing or contains no certificate.

#[path = "redis_tls_support/mod.rs"]
mod support;

use support::{Certificates, Gateway, PlainStandalone, TempDir, TlsStandalone};

/// Starts a gateway with `args` and returns its stderr, asserting that it exited with an error.
fn startup_error(args: &[&str]) -> String {
    let (succeeded, stderr) = Gateway::start(args).exit();
    assert!(!succeeded, "the gateway started with {args:?}: {stderr}");
    stderr
}

#[test]
fn plain_port_names_tls_port() {
    let dir = TempDir::new("redis-tls-plain-port");
    let redis = PlainStandalone::start(dir.path());
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    for mode in ["cluster", "standalone"] {
        let stderr = startup_error(&["--redis-url", &url, "--redis-mode", mode]);
        assert!(
            stderr.contains(&format!("redis at 127.0.0.1:{} speaks plain text, not TLS", redis.port)),
            "{mode}: {stderr}"
        );
        assert!(stderr.contains("tls-port"), "{mode}: {stderr}");
    }
}

#[test]
fn other_ca_names_ca_file() {
    let dir = TempDir::new("redis-tls-other-ca");
    let certificates = Certificates::create(dir.path());
    let redis = TlsStandalone::start(&certificates, dir.path());
    let other_ca = certificates.other_ca.display().to_string();
    let url = redis.url();

    let stderr = startup_error(&[
        "--redis-url",
        &url,
        "--redis-mode",
        "standalone",
        "--redis-ca-file",
        &other_ca,
    ]);
    assert!(stderr.contains("TLS certificate was rejected"), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(stderr.contains("--redis-ca-file"), "{stderr}");
}

#[test]
fn webpki_roots_reject_private_ca() {
    let dir = TempDir::new("redis-tls-no-ca-file");
    let certificates = Certificates::create(dir.path());
    let redis = TlsStandalone::start(&certificates, dir.path());
    let url = redis.url();

    for mode in ["cluster", "standalone"] {
        let stderr = startup_error(&["--redis-url", &url, "--redis-mode", mode]);
        assert!(stderr.contains("TLS certificate was rejected"), "{mode}: {stderr}");
        assert!(stderr.contains("webpki roots"), "{mode}: {stderr}");
        assert!(stderr.contains("set --redis-ca-file"), "{mode}: {stderr}");
    }
}

#[test]
fn required_client_certificate_named() {
    let dir = TempDir::new("redis-tls-client-certificate");
    let certificates = Certificates::create(dir.path());
    let redis = TlsStandalone::start_with(&certificates, dir.path(), &["--tls-auth-clients", "yes"]);
    let ca = certificates.ca.display().to_string();
    let url = redis.url();

    for mode in ["cluster", "standalone"] {
        let stderr = startup_error(&["--redis-url", &url, "--redis-mode", mode, "--redis-ca-file", &ca]);
        assert!(stderr.contains("requires a TLS client certificate"), "{mode}: {stderr}");
        assert!(stderr.contains("tls-auth-clients"), "{mode}: {stderr}");
    }
}

#[test]
fn unusable_ca_file_names_path() {
    let dir = TempDir::new("redis-tls-bad-ca-file");
    let certificates = Certificates::create(dir.path());
    // Nothing listens on port 1; the CA file is read before any connection.
    let url = "rediss://127.0.0.1:1";

    let missing = dir.path().join("missing.pem");
    let stderr = startup_error(&["--redis-url", url, "--redis-ca-file", missing.to_str().unwrap()]);
    assert!(
        stderr.contains(&format!("failed to read --redis-ca-file {}", missing.display())),
        "{stderr}"
    );

    // A private key is PEM, but no certificate.
    let key_only = certificates.server_key.display().to_string();
    let stderr = startup_error(&["--redis-url", url, "--redis-ca-file", &key_only]);
    assert!(
        stderr.contains(&format!(
            "invalid --redis-ca-file: {key_only}: contains no PEM certificate"
        )),
        "{stderr}"
    );
}
