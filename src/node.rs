//! `sparring node`: a process that hosts role actors for games on other machines (`[cluster]` in a scenario).
//! It listens with ractor_cluster's node server, admits the games that present the cluster's cookie (read from
//! the environment variable named, never printed), and builds each role a game places on it from the role's
//! scenario table with this binary's kinds, until it is stopped (Ctrl-C or SIGTERM).

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use sparring_engine::Registry;
use sparring_engine::cluster::{Node, NodeOptions};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Address to listen on, IP:PORT (port 0: a free one, printed). Loopback unless you give another address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// This node's name: scenarios refer to it (`cluster.nodes[].name`, a role's `node`). Default:
    /// `node-<port>`.
    #[arg(long)]
    pub name: Option<String>,
    /// The environment variable that holds the cluster's cookie (the shared secret of the games and nodes).
    #[arg(long, value_name = "VAR")]
    pub cookie_env: String,
    /// Resolve the roles' relative paths (models, adapters, data) against this directory, instead of the
    /// game's scenario directory (which must then exist here as it does there).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The largest payload (a learner batch, a saved state) this node accepts or sends, in MiB.
    #[arg(long, default_value_t = 4096)]
    pub max_transfer_mb: u64,
}

pub fn cli(a: NodeArgs, registry: &Registry) -> Result<()> {
    let cookie = std::env::var(&a.cookie_env)
        .with_context(|| format!("--cookie-env {}: the variable is not set", a.cookie_env))?;
    if cookie.is_empty() {
        bail!("--cookie-env {}: the variable is empty", a.cookie_env);
    }
    if let Some(root) = &a.root
        && !root.is_dir()
    {
        bail!("--root {}: not a directory", root.display());
    }
    // One thread for the node's sessions and its host actor (the roles compute on their own threads): fewer
    // hand-offs between workers per round trip (benches/README, "Session 15").
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let addr = a.listen;
        let node = Node::start(NodeOptions {
            listen: addr,
            name: a
                .name
                .clone()
                .unwrap_or_else(|| format!("node-{}", addr.port())),
            cookie,
            registry: registry.clone(),
            root: a.root.clone(),
            max_transfer: a.max_transfer_mb.saturating_mul(1 << 20),
        })
        .await
        .map_err(|e| anyhow!("{e}"))?;
        let name = a
            .name
            .clone()
            .unwrap_or_else(|| format!("node-{}", node.addr.port()));
        println!("node {name} listening on {}", node.addr);
        wait_for_stop().await;
        node.stop();
        Ok(())
    })
}

/// Ctrl-C or SIGTERM.
async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
