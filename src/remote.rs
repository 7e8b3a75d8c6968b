//! `--server` and `--token`, the arguments of every command that talks to a
//! server (`stream`, `query`, `export ...`), defined once and flattened into
//! each. A command whose token needs a given role says so in its own help
//! (`#[command(mut_arg("token", ...))]`). Two commands keep flags of their
//! own, as their contract differs: `replay --server` is optional (one of
//! three sources) and has no default, and `bench ingest` names it `--url`.

use clap::Args;
use tracevault_client::Client;

/// Where and as whom.
#[derive(Args)]
pub struct Remote {
    /// Server base URL.
    #[arg(
        long,
        env = "TRACEVAULT_SERVER",
        default_value = "http://127.0.0.1:8470"
    )]
    pub server: String,
    /// Bearer token.
    #[arg(long, env = "TRACEVAULT_TOKEN", hide_env_values = true)]
    pub token: String,
}

impl Remote {
    /// A client of the server with the token.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.server, &self.token)?)
    }
}

/// A runtime for one command's requests.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Reports a refusal by the server (its JSON error's message and code) on
/// stderr: the exit code 1 of the client commands.
pub fn report_refusal(e: &tracevault_client::ServerError) -> std::process::ExitCode {
    let msg = if e.code.is_empty() {
        String::from_utf8_lossy(&e.body).to_string()
    } else {
        format!("{} ({})", e.message, e.code)
    };
    eprintln!(
        "error: the server answered {}: {}",
        e.status,
        crate::terminal_text::line(&msg)
    );
    std::process::ExitCode::from(1)
}
