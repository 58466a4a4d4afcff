//! The sink-spec registry (`steer_sinks::parse`, every kind's own grammar)
//! and `steer.toml` parsing (the binary-only crate's `config.rs`, included
//! by path). Never a panic; a spec that parses
//! displays without its password and parses again to the same spec; errors
//! never echo a URL password (checked as `:PASSWORD@`, the form a leak takes).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, missing_docs)]
#[path = "../../crates/steer-cli/src/config.rs"]
mod config;

use config::ConfigFile;

/// `:PASSWORD@` of a URL-like spec, when the password occurs only there
/// (not elsewhere in the input, nor in the URL without its userinfo, where
/// normalisation such as percent-encoding can make it appear).
fn password(s: &str) -> Option<String> {
    let u = url::Url::parse(s.trim()).ok()?;
    let p = u.password()?.to_string();
    let needle = format!(":{p}@");
    let mut bare = u.clone();
    let _ = bare.set_password(None);
    let _ = bare.set_username("");
    (p.len() >= 4
        && p != "***"
        && s.matches(&needle).count() == 1
        && s.matches(&p).count() == 1
        && !bare.as_str().contains(&p))
    .then_some(needle)
}

fn check_spec(s: &str) {
    let secret = password(s);
    match steer_sinks::parse(s) {
        Ok(spec) => {
            let shown = spec.to_string();
            let debug = format!("{spec:?}");
            // Was a known leak (fuzz/artifacts-found/README.md): `otlp://u:pw@host`
            // kept `//u:pw@host`, which `redact` could not parse. Fixed: such a
            // spec becomes `http://u:pw@host`, and `redact` masks `//u:pw@` too.
            if let Some(p) = &secret {
                assert!(!shown.contains(p.as_str()), "password in Display: {shown:?}");
                assert!(!debug.contains(p.as_str()), "password in Debug: {debug:?}");
            }
            assert_eq!(spec.kind(), spec.kind());
            // Without a password the Display is a spec for the same sink.
            if secret.is_none() && !s.contains('@') {
                match steer_sinks::parse(&shown) {
                    Ok(again) => assert_eq!(again.kind(), spec.kind(), "{s:?} -> {shown:?}"),
                    Err(e) => panic!("{s:?} displays as {shown:?} which does not parse: {e}"),
                }
            }
        }
        Err(e) => {
            if let Some(p) = &secret {
                let msg = format!("{e} {e:?}");
                assert!(!msg.contains(p.as_str()), "password in error: {msg:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    check_spec(s);
    // Also as steer.toml (what `ConfigFile::load` does after reading the file).
    if let Ok(cfg) = toml::from_str::<ConfigFile>(s) {
        for sink in &cfg.sinks {
            check_spec(sink);
        }
    }
    let _ = steer_metrics::redact::redact(s);
});
