//! Loading a scenario for an evaluation: a player that cannot learn (a served model) may replace a role the
//! schedule trains ([`load_for_eval`]), and each role behind an endpoint must be reachable first
//! ([`check_endpoints`]).

use anyhow::{Result, anyhow, bail};
use sparring_engine::Role;
use sparring_engine::record::EvalMode;
use sparring_engine::registry::Registry;
use sparring_engine::scenario::{self, Loaded};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// Loads the scenario for an evaluation. Evaluation trains nothing, so a player that cannot learn
/// (`openai-chat`, a served model) may replace a role the scenario's schedule trains: when every error of the
/// load is at `defender.kind` (or `attacker.kind`) and the overrides leave `game.schedule` alone, the scenario is
/// loaded again with that role frozen (`game.schedule = "frozen-defender"`, or `"frozen-attacker"` and
/// `eval.modes = ["plain"]`: the adaptive mode's best-response attacker learns; neither changes what
/// `sparring eval` plays). If that fails too, the first load's error is the answer.
pub(crate) fn load_for_eval(file: &Path, set: &[String], registry: &Registry) -> Result<Loaded> {
    let first = match scenario::load(file, set, registry) {
        Ok(l) => return Ok(l),
        Err(e) => e,
    };
    let only_at = |k: &str| {
        !first.errors.is_empty() && first.errors.iter().all(|e| e.key.as_deref() == Some(k))
    };
    let frozen: &[&str] = if only_at("defender.kind") {
        &["game.schedule=\"frozen-defender\""]
    } else if only_at("attacker.kind") {
        &[
            "game.schedule=\"frozen-attacker\"",
            "eval.modes=[\"plain\"]",
        ]
    } else {
        &[]
    };
    let schedule_set = set.iter().any(|o| {
        scenario::parse_override(o).is_ok_and(|(k, _)| k == "game" || k == "game.schedule")
    });
    if frozen.is_empty() || schedule_set {
        bail!("{first}");
    }
    let mut again = set.to_vec();
    again.extend(frozen.iter().map(|o| o.to_string()));
    scenario::load(file, &again, registry).map_err(|_| anyhow!("{first}"))
}

/// Did the overrides give `role` another kind than the scenario file's (a run's saved state is then not its)?
pub(super) fn replaced(file: &Path, loaded: &Loaded, role: &str) -> bool {
    let Some(kind) = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .and_then(|t| Some(t.get(role)?.get("kind")?.as_str()?.to_string()))
    else {
        return false;
    };
    let now = match role {
        "attacker" => &loaded.scenario.attacker.kind,
        "defender" => &loaded.role(Role::Defender).kind,
        _ => &loaded.scenario.judge.kind,
    };
    *now != kind
}

/// Before the players are built, each role of the evaluation that plays through an endpoint (a `base_url`, as
/// `openai-chat` and `openai-judge` have; the attacker only in the attacker mode) must accept a TCP connection:
/// an endpoint that is down is then an error at once, naming the role and the URL, rather than after its
/// requests' retries and the role's restarts. Only reachability is checked: what the server answers (a wrong
/// model, a wrong path, a missing key) comes back from the first request, with the status and the body.
pub(crate) fn check_endpoints(loaded: &Loaded, mode: EvalMode) -> Result<()> {
    let s = &loaded.scenario;
    let mut roles = vec![("defender", s.role(Role::Defender)), ("judge", &s.judge)];
    if mode != EvalMode::Plain {
        roles.insert(0, ("attacker", &s.attacker));
    }
    for (role, cfg) in roles {
        let Some(url) = cfg.params.get("base_url").and_then(|v| v.as_str()) else {
            continue;
        };
        // A URL the role's own checks accepted but this cannot read is left to the role.
        let Some((host, port)) = host_port(url) else {
            continue;
        };
        if let Err(e) = reachable(&host, port) {
            bail!(
                "the {role}'s endpoint {url} (`{role}.base_url`, kind `{}`) cannot be reached: {e}; is the \
                 server running (e.g. `sparring serve SCENARIO --role {role} --addr {host}:{port}`)?",
                cfg.kind
            );
        }
    }
    Ok(())
}

/// The host and port of an `http://` or `https://` URL (the scheme's port when none is given).
fn host_port(url: &str) -> Option<(String, u16)> {
    let u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    let host = match u.host()? {
        url::Host::Ipv6(a) => a.to_string(),
        h => h.to_string(),
    };
    Some((host, u.port_or_known_default()?))
}

/// Connects to `host:port` (each address it resolves to, 5 s each; a second round after a second, for a server
/// still starting); the last error if none answers.
fn reachable(host: &str, port: u16) -> Result<(), String> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .collect();
    let mut last = format!("`{host}` resolves to no address");
    for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        for a in &addrs {
            match TcpStream::connect_timeout(a, Duration::from_secs(5)) {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("{a}: {e}"),
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_give_their_host_and_port() {
        assert_eq!(
            host_port("http://127.0.0.1:8080/v1"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            host_port("https://api.example.com/v1"),
            Some(("api.example.com".into(), 443))
        );
        assert_eq!(host_port("http://[::1]:9/v1"), Some(("::1".into(), 9)));
        assert_eq!(host_port("http://gpu-box"), Some(("gpu-box".into(), 80)));
        assert_eq!(host_port("ftp://x/"), None);
        assert_eq!(host_port("http://:80/"), None);
    }
}
