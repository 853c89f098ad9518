use super::*;

const GOOD_HASH: &str = "$2y$05$1Mk7VI09gNxPCtdhvvXepuStlU9Ih5pmkxo3b3Ih3oFAggIgjSoQm";

fn minimal(extra: &str) -> String {
    format!(
        r#"
listen:
  http: "127.0.0.1:8080"
upstreams:
  query: "http://127.0.0.1:9090"
  receive: "http://127.0.0.1:9090/api/v1/write"
tenants:
  - id: team-a
    external_labels: {{cluster: eu-1}}
    limits: {{write_samples_per_second: 100}}
  - id: team-b
users:
  - name: agent-a
    password_hash: "{GOOD_HASH}"
    tenants: [team-a]
    access: [write]
{extra}
"#
    )
}

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    Config::from_yaml(yaml, "test.yaml", Path::new("."))
}

fn errors(yaml: &str) -> Vec<ConfigError> {
    load(yaml).expect_err("config must be refused").errors
}

fn has(errs: &[ConfigError], key: &str, needle: &str) -> bool {
    errs.iter()
        .any(|e| e.key == key && e.message.contains(needle))
}

#[test]
fn a_good_config_is_lowered() {
    let c = load(&minimal("")).unwrap();
    assert_eq!(c.listen.http, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(c.upstreams.query.address, "127.0.0.1:9090");
    assert_eq!(c.upstreams.query.path, "");
    assert_eq!(c.upstreams.receive.path, "/api/v1/write");
    assert_eq!(
        c.upstreams.rules, c.upstreams.query,
        "rules defaults to query"
    );
    assert_eq!(c.tenancy.header, "thanos-tenant");
    assert_eq!(c.tenancy.label, "tenant_id");
    assert!(c.tenancy.inject_label_on_write);
    let a = &c.tenants["team-a"];
    assert_eq!(a.external_labels["cluster"], "eu-1");
    assert_eq!(a.limits.write_samples_per_second, 100.0);
    assert_eq!(
        a.limits.max_body_bytes,
        10 * 1024 * 1024,
        "inherits the default"
    );
    let u = c.user("agent-a").unwrap();
    assert!(u.access.write && !u.access.read);
    assert!(matches!(u.password_hash, Some(PasswordHash::Bcrypt(_))));
}

#[test]
fn defaults_are_inherited_and_overridden() {
    let yaml = minimal("").replacen(
        "\ntenants:",
        "\ndefaults:\n  limits: {requests_per_second: 5, max_body_bytes: 1000}\n  external_labels: {region: eu, cluster: none}\ntenants:",
        1,
    );
    let c = load(&yaml).unwrap();
    let a = &c.tenants["team-a"];
    assert_eq!(a.limits.requests_per_second, 5.0);
    assert_eq!(a.limits.max_body_bytes, 1000);
    assert_eq!(a.limits.write_samples_per_second, 100.0);
    assert_eq!(
        a.external_labels["cluster"], "eu-1",
        "tenant overrides default"
    );
    assert_eq!(a.external_labels["region"], "eu");
    assert_eq!(c.tenants["team-b"].external_labels["cluster"], "none");
}

#[test]
fn server_settings_default_and_override() {
    let c = load(&minimal("")).unwrap();
    assert!(c.server.threads >= 1);
    assert!(!c.server.work_stealing, "one runtime per thread by default");
    assert!(c.server.short_way, "the short way is on by default");
    assert_eq!(c.server.grace_period, Duration::from_secs(30));
    let c = load(&minimal(
        "server: {threads: 3, work_stealing: true, grace_period_seconds: 4, short_way: false}",
    ))
    .unwrap();
    assert_eq!(c.server.threads, 3);
    assert!(c.server.work_stealing);
    assert!(!c.server.short_way);
    assert_eq!(c.server.grace_period, Duration::from_secs(4));
    let errs = errors(&minimal("server: {work_stealing: sometimes}"));
    assert!(errs.iter().any(|e| e.key.starts_with("server")), "{errs:?}");
}

#[test]
fn pinned_workers_are_opt_in_and_need_a_runtime_per_thread() {
    assert!(!load(&minimal("")).unwrap().server.pin_workers);
    let c = load(&minimal("server: {threads: 2, pin_workers: true}")).unwrap();
    assert!(c.server.pin_workers);
    // With one shared runtime tasks move between threads: nothing would stay on one CPU.
    let errs = errors(&minimal("server: {pin_workers: true, work_stealing: true}"));
    assert!(
        errs.iter()
            .any(|e| e.key == "server.pin_workers"
                && e.message.contains("server.work_stealing: false")),
        "{errs:?}"
    );
}

#[test]
fn unknown_keys_are_all_reported_with_paths_and_lines() {
    let yaml = minimal("").replace(
        "  http: \"127.0.0.1:8080\"",
        "  http: \"127.0.0.1:8080\"\n  htp: x",
    ) + "unknown_top: 1\n";
    let yaml = yaml.replace("    access: [write]", "    access: [write]\n    pasword: x");
    let errs = errors(&yaml);
    assert!(has(&errs, "listen.htp", "unknown key"), "{errs:?}");
    assert!(has(&errs, "unknown_top", "unknown key"), "{errs:?}");
    assert!(
        has(&errs, "users[0].pasword", "unknown key")
            || has(&errs, "users.0.pasword", "unknown key"),
        "{errs:?}"
    );
    let htp = errs.iter().find(|e| e.key == "listen.htp").unwrap();
    assert_eq!(htp.line, Some(4), "{htp:?}");
}

#[test]
fn unknown_tenant_in_users_is_refused() {
    let yaml = minimal("").replace("tenants: [team-a]", "tenants: [team-a, team-z]");
    let errs = errors(&yaml);
    assert!(
        has(&errs, "users[0].tenants[1]", "unknown tenant \"team-z\""),
        "{errs:?}"
    );
}

#[test]
fn malformed_hashes_are_refused() {
    for bad in [
        "$2y$05$tooshort",
        "plaintext",
        "$argon2i$v=19$m=1,t=1,p=1$abc$def",
        "$argon2id$broken",
    ] {
        let yaml = minimal("").replace(GOOD_HASH, bad);
        let errs = errors(&yaml);
        assert!(
            errs.iter().any(|e| e.key == "users[0].password_hash"),
            "{bad}: {errs:?}"
        );
    }
}

#[test]
fn bad_addresses_and_urls_are_refused() {
    let yaml = minimal("")
        .replace("\"127.0.0.1:8080\"", "\"localhost-8080\"")
        .replace("\"http://127.0.0.1:9090\"", "\"ftp://x\"")
        .replace("\"http://127.0.0.1:9090/api/v1/write\"", "\"not a url\"");
    let errs = errors(&yaml);
    assert!(has(&errs, "listen.http", "host:port"), "{errs:?}");
    assert!(has(&errs, "upstreams.query", "scheme"), "{errs:?}");
    assert!(has(&errs, "upstreams.receive", "not a URL"), "{errs:?}");
    assert_eq!(errs.len(), 3, "every error, not just the first: {errs:?}");
}

#[test]
fn missing_required_keys() {
    let errs = errors("tenants: []\n");
    assert!(has(&errs, "listen", "listen.http"), "{errs:?}");
    assert!(has(&errs, "upstreams.query", "required"), "{errs:?}");
    assert!(has(&errs, "upstreams.receive", "required"), "{errs:?}");
}

#[test]
fn users_tenants_labels_and_access_are_checked() {
    let yaml = minimal(
        r#"  - name: agent-a
    password_hash: "$2y$05$1Mk7VI09gNxPCtdhvvXepuStlU9Ih5pmkxo3b3Ih3oFAggIgjSoQm"
    tenants: []
    access: [admin]
"#,
    )
    .replace("{cluster: eu-1}", "{tenant_id: x, \"bad-name\": y, __x: z}")
    .replace(
        "  - id: team-b",
        "  - id: team-b\n  - id: \"../etc\"\n  - id: api\n  - id: team-b",
    );
    let errs = errors(&yaml);
    assert!(has(&errs, "users[1].name", "declared twice"), "{errs:?}");
    assert!(
        has(&errs, "users[1].tenants", "at least one tenant"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "users[1].access[0]", "not read or write"),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            "tenants[0].external_labels.tenant_id",
            "tenant label"
        ),
        "{errs:?}"
    );
    assert!(
        has(&errs, "tenants[0].external_labels.bad-name", "label name"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "tenants[0].external_labels.__x", "label name"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "tenants[2].id", "not a valid tenant id"),
        "{errs:?}"
    );
    assert!(has(&errs, "tenants[3].id", "reserved"), "{errs:?}");
    assert!(has(&errs, "tenants[4].id", "declared twice"), "{errs:?}");
}

#[test]
fn tenancy_settings_are_checked() {
    let yaml = minimal("tenancy: {header: \"bad header\", label: \"1abc\"}\n");
    let errs = errors(&yaml);
    assert!(has(&errs, "tenancy.header", "header name"), "{errs:?}");
    assert!(has(&errs, "tenancy.label", "label name"), "{errs:?}");
    let errs = errors(&minimal("tenancy: {header: Authorization}\n"));
    assert!(
        has(&errs, "tenancy.header", "standard HTTP header"),
        "{errs:?}"
    );
}

#[test]
fn type_errors_and_yaml_syntax_name_a_line() {
    let errs = errors(&minimal("").replace(
        "write_samples_per_second: 100",
        "write_samples_per_second: lots",
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].line.is_some(), "{errs:?}");
    let errs = errors("listen: [unclosed\n");
    assert!(errs[0].line.is_some(), "{errs:?}");
}

#[test]
fn tls_and_ui_requirements() {
    let errs = errors(
        &minimal("ui: {enabled: true, cookie_secret: short}\n")
            .replace("  http: \"127.0.0.1:8080\"", "  https: \"127.0.0.1:8443\""),
    );
    assert!(has(&errs, "listen.tls", "required"), "{errs:?}");
    assert!(has(&errs, "ui.cookie_secret", "32 bytes"), "{errs:?}");
    let errs = errors(&minimal("").replace(
        "  http: \"127.0.0.1:8080\"",
        "  https: \"127.0.0.1:8443\"\n  tls: {cert_file: /nonexistent.crt, key_file: /nonexistent.key, client_auth: sometimes}",
    ));
    assert!(
        has(&errs, "listen.tls.cert_file", "cannot read"),
        "{errs:?}"
    );
    assert!(has(&errs, "listen.tls.key_file", "cannot read"), "{errs:?}");
    assert!(has(&errs, "listen.tls.client_auth", "not none"), "{errs:?}");
    // HTTPS connections are told from plain ones by their port: the two listeners differ in it.
    let errs = errors(&minimal("").replace(
        "  http: \"127.0.0.1:8080\"",
        "  http: \"127.0.0.1:8080\"\n  https: \"0.0.0.0:8080\"",
    ));
    assert!(
        has(&errs, "listen.https", "port of listen.http"),
        "{errs:?}"
    );
}

#[test]
fn users_without_a_password_log_in_by_their_certificate_mapping() {
    let c = load(&minimal(
        "  - {name: cert-user, certificate: {field: cn, value: \"svc.team-b\"}, tenants: [team-b], access: [read]}\n\
         \x20 - {name: both, password_hash: \"$2y$05$1Mk7VI09gNxPCtdhvvXepuStlU9Ih5pmkxo3b3Ih3oFAggIgjSoQm\", certificate: {field: dns, value: Agent.Example}, tenants: [team-a], access: [write]}\n\
         \x20 - {name: spiffe, certificate: {field: uri, value: \"spiffe://example.org/ns/a/sa/Agent\"}, tenants: [team-a], access: [write]}\n\
         \x20 - {name: mail, certificate: {field: email, value: Ops@Example.org}, tenants: [team-a], access: [read]}\n",
    ))
    .unwrap();
    let u = c.user("cert-user").unwrap();
    assert!(u.password_hash.is_none());
    assert_eq!(
        u.certificate,
        Some(CertificateMatch {
            field: CertificateField::Cn,
            value: "svc.team-b".into()
        })
    );
    // The user name is not a certificate identity of its own.
    assert!(c.user("agent-a").unwrap().certificate.is_none());
    // DNS names are stored lowercased and compared ASCII case-insensitively...
    let both = c.user("both").unwrap();
    assert!(both.password_hash.is_some());
    let dns = both.certificate.as_ref().unwrap();
    assert_eq!(
        (dns.field, dns.value.as_str()),
        (CertificateField::Dns, "agent.example")
    );
    assert!(dns.matches("AGENT.example") && dns.matches("agent.example"));
    assert!(!dns.matches("agent.example.") && !dns.matches("agent.examplf"));
    // ...everything else byte for byte.
    let cn = u.certificate.as_ref().unwrap();
    assert!(cn.matches("svc.team-b") && !cn.matches("SVC.team-b") && !cn.matches("svc.team-b "));
    let uri = c.user("spiffe").unwrap().certificate.as_ref().unwrap();
    assert!(uri.matches("spiffe://example.org/ns/a/sa/Agent"));
    assert!(!uri.matches("spiffe://example.org/ns/a/sa/agent"));
    let mail = c.user("mail").unwrap().certificate.as_ref().unwrap();
    assert_eq!(mail.field, CertificateField::Email);
    assert!(mail.matches("Ops@Example.org") && !mail.matches("ops@example.org"));
}

#[test]
fn a_user_needs_a_password_or_a_certificate() {
    let errs = errors(&minimal(
        "  - {name: nothing, tenants: [team-b], access: [read]}\n",
    ));
    assert!(
        has(&errs, "users[1]", "password_hash, certificate, or both"),
        "{errs:?}"
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
}

#[test]
fn certificate_mappings_are_checked() {
    let errs = errors(&minimal(
        r#"  - name: unknown-field
    certificate: {field: ou, value: x}
    tenants: [team-a]
    access: [read]
  - name: empty-value
    certificate: {field: cn, value: ""}
    tenants: [team-a]
    access: [read]
  - name: missing
    certificate: {}
    tenants: [team-a]
    access: [read]
  - name: unknown-key
    certificate: {field: cn, value: k, match: prefix}
    tenants: [team-a]
    access: [read]
  - name: padded
    certificate: {field: cn, value: " padded"}
    tenants: [team-a]
    access: [read]
  - name: not-ascii
    certificate: {field: dns, value: "bücher.example"}
    tenants: [team-a]
    access: [read]
  - name: upper
    certificate: {field: CN, value: upper}
    tenants: [team-a]
    access: [read]
"#,
    ));
    assert!(
        has(
            &errs,
            "users[1].certificate.field",
            "not cn, dns, uri or email"
        ),
        "{errs:?}"
    );
    assert!(
        has(&errs, "users[2].certificate.value", "must not be empty"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "users[3].certificate.field", "required"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "users[3].certificate.value", "required"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "users[4].certificate.match", "unknown key"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "users[5].certificate.value", "whitespace"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "users[6].certificate.value", "ASCII"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "users[7].certificate.field", "\"CN\" is not cn"),
        "{errs:?}"
    );
    let e = errs
        .iter()
        .find(|e| e.key == "users[2].certificate.value")
        .unwrap();
    let line = minimal("").lines().count()
        + r#"  - name: unknown-field
    certificate: {field: ou, value: x}
    tenants: [team-a]
    access: [read]
  - name: empty-value"#
            .lines()
            .count();
    assert_eq!(e.line, Some(line), "{e:?}");
}

#[test]
fn two_users_mapping_the_same_certificate_value_are_refused() {
    let errs = errors(&minimal(
        r#"  - name: one
    certificate: {field: cn, value: shared}
    tenants: [team-a]
    access: [read]
  - name: two
    certificate: {field: cn, value: shared}
    tenants: [team-b]
    access: [read]
  - name: dns-one
    certificate: {field: dns, value: host.example}
    tenants: [team-a]
    access: [read]
  - name: dns-two
    certificate: {field: dns, value: HOST.example}
    tenants: [team-b]
    access: [read]
"#,
    ));
    assert!(
        has(
            &errs,
            "users[2].certificate.value",
            "already identifies user \"one\" (users[1])"
        ),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            "users[4].certificate.value",
            "already identifies user \"dns-one\" (users[3])"
        ),
        "{errs:?}"
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    // The same value in different fields names different things: allowed.
    load(&minimal(
        "  - {name: one, certificate: {field: cn, value: shared}, tenants: [team-a], access: [read]}\n\
         \x20 - {name: two, certificate: {field: dns, value: shared}, tenants: [team-b], access: [read]}\n",
    ))
    .unwrap();
}

#[test]
fn error_display_lists_everything() {
    let e = load("tenants: []\n").unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("test.yaml: 3 error(s)"), "{text}");
    assert!(text.contains("upstreams.query: required"), "{text}");
}

#[test]
fn errors_in_list_items_point_at_their_line() {
    let yaml = minimal(
        r#"  - name: second
    password_hash: "nope"
    tenants: [team-b]
    access: [read]
"#,
    );
    let errs = errors(&yaml);
    let e = errs
        .iter()
        .find(|e| e.key == "users[1].password_hash")
        .unwrap();
    let expected = yaml.lines().position(|l| l.contains("\"nope\"")).unwrap() + 1;
    assert_eq!(e.line, Some(expected), "{errs:?}");
}

#[test]
fn upstream_host_headers_carry_the_port_only_when_it_is_not_the_default() {
    for (url, host_header, address) in [
        ("http://127.0.0.1:9090", "127.0.0.1:9090", "127.0.0.1:9090"),
        ("http://thanos-query", "thanos-query", "thanos-query:80"),
        (
            "https://thanos.example:443/",
            "thanos.example",
            "thanos.example:443",
        ),
        (
            "https://thanos.example:8443",
            "thanos.example:8443",
            "thanos.example:8443",
        ),
        ("http://[::1]:9090", "[::1]:9090", "[::1]:9090"),
        ("http://[::1]", "[::1]", "[::1]:80"),
    ] {
        let yaml = minimal("").replace(
            r#"query: "http://127.0.0.1:9090""#,
            &format!("query: {url:?}"),
        );
        let c = load(&yaml).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(c.upstreams.query.host_header, host_header, "{url}");
        assert_eq!(c.upstreams.query.address, address, "{url}");
    }
}

/// `minimal` with one `oidc` entry per item of `entries` (each the lines after `- `, indented
/// by four).
fn with_oidc(entries: &[&str]) -> String {
    let mut extra = String::from("oidc:\n");
    for e in entries {
        let mut lines = e.lines();
        extra.push_str(&format!("  - {}\n", lines.next().unwrap_or_default()));
        for l in lines {
            extra.push_str(&format!("    {l}\n"));
        }
    }
    minimal(&extra)
}

#[test]
fn plain_http_issuers_are_refused_off_loopback() {
    for ok in [
        "https://idp.example",
        "https://10.0.0.1:8443/realms/x",
        "http://127.0.0.1:5556",
        "http://127.9.8.7/dex",
        "http://[::1]:5556",
        "http://localhost:5556/",
        "http://LOCALHOST:5556",
    ] {
        let yaml = with_oidc(&[&format!("issuer: {ok:?}\naudience: whizard")]);
        let c = load(&yaml).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(c.oidc.len(), 1, "{ok}");
    }
    for bad in [
        "http://idp.example",
        "http://10.0.0.1:5556",
        "http://[::ffff:127.0.0.1]:5556",
        "http://localhost.idp.example",
        "http://0.0.0.0:5556",
    ] {
        let yaml = with_oidc(&[&format!("issuer: {bad:?}\naudience: whizard")]);
        let errs = errors(&yaml);
        assert!(
            has(&errs, "oidc[0].issuer", "plain http"),
            "{bad}: {errs:?}"
        );
        let e = errs.iter().find(|e| e.key == "oidc[0].issuer").unwrap();
        assert_eq!(e.line, Some(18), "{bad}: {errs:?}");
    }
}

#[test]
fn duplicate_issuers_are_refused() {
    let errs = errors(&with_oidc(&[
        "issuer: \"https://idp.example/realms/a\"\naudience: whizard",
        "issuer: \"https://idp.example/realms/b\"\naudience: whizard",
        "issuer: \"https://idp.example/realms/a/\"\naudience: other",
    ]));
    assert!(
        has(&errs, "oidc[2].issuer", "already configured in oidc[0]"),
        "{errs:?}"
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
}

#[test]
fn group_tenants_must_name_configured_valid_tenants() {
    let c = load(&with_oidc(&[
        "issuer: \"https://idp.example\"\naudience: whizard\ngroups_claim: groups\ngroup_tenants: {ops: [team-a, team-b]}",
    ]))
    .unwrap();
    assert_eq!(
        c.oidc[0].provider.group_tenants["ops"],
        vec!["team-a", "team-b"]
    );
    let errs = errors(&with_oidc(&[
        "issuer: \"https://idp.example\"\naudience: whizard\ngroups_claim: groups\ngroup_tenants:\n  ops: [team-a, team-z, \"a|b\"]\n  devs: [\"..\"]",
    ]));
    assert!(
        has(
            &errs,
            "oidc[0].group_tenants.ops[1]",
            "unknown tenant \"team-z\""
        ),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            "oidc[0].group_tenants.ops[2]",
            "not a valid tenant id"
        ),
        "{errs:?}"
    );
    assert!(
        has(
            &errs,
            "oidc[0].group_tenants.devs[0]",
            "not a valid tenant id"
        ),
        "{errs:?}"
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
}

#[test]
fn oidc_tls_files_are_checked_and_resolved() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp-ca.crt"), "x").unwrap();
    let yaml = with_oidc(&[
        "issuer: \"https://idp.example\"\naudience: whizard",
        "issuer: \"https://idp2.example\"\naudience: whizard\ntls: {ca_file: idp-ca.crt}",
    ]);
    let c = Config::from_yaml(&yaml, "test.yaml", dir.path()).unwrap();
    assert_eq!(c.oidc[0].tls, OidcTls::default(), "system roots by default");
    assert_eq!(
        c.oidc[1].tls.ca_file.as_deref(),
        Some(dir.path().join("idp-ca.crt").as_path())
    );

    let errs = errors(&with_oidc(&[
        "issuer: \"https://idp.example\"\naudience: whizard\ntls:\n  ca_file: /nonexistent/idp-ca.crt\n  cert_file: /nonexistent/c.crt",
    ]));
    assert!(
        has(
            &errs,
            "oidc[0].tls.ca_file",
            "cannot read /nonexistent/idp-ca.crt"
        ),
        "{errs:?}"
    );
    assert!(
        has(&errs, "oidc[0].tls.cert_file", "cannot read"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "oidc[0].tls.key_file", "required with cert_file"),
        "{errs:?}"
    );
    let ca = errs
        .iter()
        .find(|e| e.key == "oidc[0].tls.ca_file")
        .unwrap();
    assert_eq!(ca.line, Some(21), "{errs:?}");

    // There is no way to loosen verification for a provider, nor to borrow another name.
    let errs = errors(&with_oidc(&[
        "issuer: \"https://idp.example\"\naudience: whizard\ntls: {insecure_skip_verify: true, server_name: thanos-query}",
    ]));
    assert!(
        has(&errs, "oidc[0].tls.insecure_skip_verify", "unknown key"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "oidc[0].tls.server_name", "unknown key"),
        "{errs:?}"
    );
}

fn with_metrics(extra: &str) -> String {
    minimal(extra).replacen(
        "  http: \"127.0.0.1:8080\"\n",
        "  http: \"127.0.0.1:8080\"\n  metrics: \"127.0.0.1:9091\"\n",
        1,
    )
}

#[test]
fn cluster_is_optional_and_lowered() {
    assert!(load(&minimal("")).unwrap().cluster.is_none());
    let c = load(&with_metrics(
        "cluster:\n  peers: [\"10.0.0.1:9091\", \"whizard-1.whizard:9091\", \"[fd00::2]:9091\"]\n  refresh_seconds: 1\n",
    ))
    .unwrap();
    let cluster = c.cluster.unwrap();
    assert_eq!(cluster.refresh, Duration::from_secs(1));
    let Discovery::Peers(peers) = cluster.discovery else {
        panic!("peers expected")
    };
    let shown: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        ["10.0.0.1:9091", "whizard-1.whizard:9091", "[fd00::2]:9091"]
    );
    assert_eq!(peers[2].host, "fd00::2");
    let c = load(&with_metrics(
        "cluster: {dns: \"whizard-headless.monitoring.svc:9091\"}",
    ))
    .unwrap();
    let cluster = c.cluster.unwrap();
    assert_eq!(cluster.refresh, Duration::from_secs(5), "default");
    assert_eq!(
        cluster.discovery,
        Discovery::Dns(HostPort {
            host: "whizard-headless.monitoring.svc".into(),
            port: 9091
        })
    );
}

#[test]
fn cluster_errors_name_the_key() {
    let both = errors(&with_metrics(
        "cluster: {dns: \"h:9091\", peers: [\"10.0.0.1:9091\"]}",
    ));
    assert!(has(&both, "cluster", "exactly one of"), "{both:?}");
    let neither = errors(&with_metrics("cluster: {refresh_seconds: 5}"));
    assert!(has(&neither, "cluster", "exactly one of"), "{neither:?}");
    let errs = errors(&with_metrics(
        "cluster:\n  peers:\n    - \"10.0.0.1:9091\"\n    - \"10.0.0.1\"\n    - \"10.0.0.1:9091\"\n    - \"::1:9091\"\n    - \"bad host:1\"\n    - \"0.0.0.0:9091\"\n    - \"h:0\"\n  refresh_seconds: 0\n",
    ));
    assert!(has(&errs, "cluster.peers[1]", "not host:port"), "{errs:?}");
    assert!(has(&errs, "cluster.peers[2]", "listed twice"), "{errs:?}");
    assert!(has(&errs, "cluster.peers[3]", "brackets"), "{errs:?}");
    assert!(
        has(&errs, "cluster.peers[4]", "not an IP address or a DNS name"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "cluster.peers[5]", "not the address of a replica"),
        "{errs:?}"
    );
    assert!(has(&errs, "cluster.peers[6]", "1 to 65535"), "{errs:?}");
    assert!(
        has(&errs, "cluster.refresh_seconds", "0.1 to 3600"),
        "{errs:?}"
    );
    let line = errs
        .iter()
        .find(|e| e.key == "cluster.peers[2]")
        .and_then(|e| e.line);
    assert!(line.is_some(), "{errs:?}");
    let errs = errors(&with_metrics("cluster: {peers: []}"));
    assert!(has(&errs, "cluster.peers", "this one included"), "{errs:?}");
    let errs = errors(&with_metrics("cluster: {dns: \"svc\"}"));
    assert!(has(&errs, "cluster.dns", "not host:port"), "{errs:?}");
    let errs = errors(&minimal("cluster: {peers: [\"10.0.0.1:9091\"]}"));
    assert!(has(&errs, "cluster", "requires listen.metrics"), "{errs:?}");
    let errs = errors(&with_metrics(
        "cluster: {peers: [\"10.0.0.1:9091\"], seeds: 3}",
    ));
    assert!(has(&errs, "cluster.seeds", "unknown key"), "{errs:?}");
}

#[test]
fn write_routing_by_label_is_lowered_and_checked() {
    let user = |extra: &str| {
        minimal(&format!(
            "  - name: ruler\n    password_hash: \"{GOOD_HASH}\"\n    tenants: [team-a, team-b]\n{extra}"
        ))
    };
    let c = load(&user(
        "    access: [write]\n    write_routing: by_label\n    default_tenant: team-b\n",
    ))
    .unwrap();
    assert_eq!(
        c.user("ruler").unwrap().write_routing,
        WriteRouting::ByLabel {
            default_tenant: Some("team-b".into())
        }
    );
    assert_eq!(
        c.user("agent-a").unwrap().write_routing,
        WriteRouting::Named
    );
    let c = load(&user("    access: [write]\n    write_routing: by_label\n")).unwrap();
    assert_eq!(
        c.user("ruler").unwrap().write_routing,
        WriteRouting::ByLabel {
            default_tenant: None
        }
    );
    let c = load(&user("    access: [write]\n    write_routing: named\n")).unwrap();
    assert_eq!(c.user("ruler").unwrap().write_routing, WriteRouting::Named);

    let e = errors(&user("    access: [read]\n    write_routing: by_label\n"));
    assert!(
        has(&e, "users[1].write_routing", "needs write access"),
        "{e:?}"
    );
    let e = errors(&user("    access: [write]\n    write_routing: by_series\n"));
    assert!(
        has(&e, "users[1].write_routing", "not named or by_label"),
        "{e:?}"
    );
    let e = errors(&user(
        "    access: [write]\n    write_routing: by_label\n    default_tenant: team-c\n",
    ));
    assert!(
        has(
            &e,
            "users[1].default_tenant",
            "not one of this user's tenants"
        ),
        "{e:?}"
    );
    let e = errors(&user("    access: [write]\n    default_tenant: team-a\n"));
    assert!(
        has(&e, "users[1].default_tenant", "only used with"),
        "{e:?}"
    );
}

/// The raw model serialises only the keys that were set, and a serialised `File` reads back
/// equal and validates as the original did (the reconciler writes configs through it).
#[test]
fn the_raw_model_round_trips_through_serialisation() {
    let yaml = r#"
listen:
  http: "127.0.0.1:8080"
  metrics: "127.0.0.1:9091"
upstreams:
  query: "http://127.0.0.1:9090"
  receive: "http://127.0.0.1:9090/api/v1/write"
  timeout_seconds: 30
  connect_timeout_seconds: 0.5
  remote_writes:
    - {name: backup, url: "https://backup.example/api/v1/write", timeout_seconds: 15, headers: {X-Key: k}}
tenancy: {header: X-Org, label: org, inject_label_on_write: false}
defaults:
  limits: {requests_per_second: 5, max_body_bytes: 1000, max_query_range: 86400}
  external_labels: {region: eu}
tenants:
  - id: team-a
    external_labels: {cluster: eu-1}
    limits: {write_samples_per_second: 100}
  - id: team-b
users:
  - name: agent-a
    password_hash: "GOOD"
    tenants: [team-a]
    access: [write]
  - name: writer
    password_hash: "GOOD"
    tenants: [team-a, team-b]
    access: [write]
    write_routing: by_label
    default_tenant: team-b
  - name: reader
    password_hash: "GOOD"
    tenants: [team-b]
    access: [read]
oidc:
  - issuer: "https://idp.example"
    audience: whizard
    groups_claim: groups
    group_tenants: {ops: [team-a, team-b]}
cluster:
  peers: ["10.0.0.1:9091", "10.0.0.2:9091"]
  refresh_seconds: 2.5
server: {threads: 3, work_stealing: true, grace_period_seconds: 4}
logging: {format: json, access_log: false}
"#
    .replace("GOOD", GOOD_HASH);
    load(&yaml).unwrap_or_else(|e| panic!("original rejected: {e}"));

    let raw: file::File = serde_norway::from_str(&yaml).unwrap();
    let text = serde_norway::to_string(&raw).unwrap();
    let again: file::File = serde_norway::from_str(&text).unwrap();
    assert_eq!(raw, again, "{text}");
    assert_eq!(serde_norway::to_string(&again).unwrap(), text);
    load(&text).unwrap_or_else(|e| panic!("serialised config rejected: {e}\n{text}"));

    // Only what was set is written: no `ui`, no `listen.tls`, no empty maps or limits.
    let v: serde_json::Value = serde_norway::from_str(&text).unwrap();
    assert!(v.get("ui").is_none(), "{text}");
    assert!(v["listen"].get("tls").is_none(), "{text}");
    assert!(v["upstreams"].get("tls").is_none(), "{text}");
    assert!(v["tenants"][1].get("limits").is_none(), "{text}");
    assert!(v["tenants"][1].get("external_labels").is_none(), "{text}");
    assert!(v["users"][0].get("write_routing").is_none(), "{text}");
    // Whole seconds are written as integers, rates keep their float form.
    assert!(text.contains("timeout_seconds: 15\n"), "{text}");
    assert!(text.contains("max_query_range: 86400\n"), "{text}");
    assert!(text.contains("connect_timeout_seconds: 0.5\n"), "{text}");
    assert!(text.contains("requests_per_second: 5.0\n"), "{text}");

    // An empty config writes only the sections every config has.
    let empty = serde_json::to_value(file::File::default()).unwrap();
    let keys: Vec<&String> = empty.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["tenancy", "tenants", "users"]);
}

/// A section read from JSON (the reconciler's free-form `Gateway.spec.oidc` entries) refuses
/// what the loader refuses: unknown keys and wrong types.
#[test]
fn sections_from_json_refuse_unknown_keys() {
    let ok: file::Oidc =
        file::from_json(serde_json::json!({"issuer": "https://idp", "tls": {"ca_file": "c"}}))
            .unwrap();
    assert_eq!(ok.tls.unwrap().ca_file.as_deref(), Some("c"));
    let e = file::from_json::<file::Oidc>(serde_json::json!({"issuer": "x", "tls": {"ca": "c"}}))
        .unwrap_err();
    assert!(
        matches!(&e, file::FromJsonError::UnknownKeys(k) if k == &["tls.ca"]),
        "{e}"
    );
    let e = file::from_json::<file::Oidc>(serde_json::json!({"issuer": 3})).unwrap_err();
    assert!(matches!(e, file::FromJsonError::Invalid(_)), "{e}");
}
