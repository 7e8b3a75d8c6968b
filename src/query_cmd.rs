//! `tracevault query`: runs SQL through `POST /v1/query` and prints the result
//! as an aligned table (default), JSON, CSV, or raw Arrow IPC stream bytes.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::Value;
#[cfg(test)]
use serde_json::json;

use crate::remote::{Remote, runtime};

/// Output formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum OutFormat {
    /// Aligned columns for a terminal.
    Table,
    /// The server's JSON (`{"columns", "rows"}`).
    Json,
    /// RFC 4180 CSV with a header line.
    Csv,
    /// Arrow IPC stream bytes (for pyarrow, DuckDB, ...).
    Arrow,
}

/// `--server` and `--token`, the token's role in its help. (Set here, on a
/// struct of its own: `mut_arg` moves the argument last, which would move
/// `--token` after the command's other required arguments in the usage line.)
#[derive(Args)]
#[command(mut_arg("token", |a| a.help("Reader or admin token")))]
pub struct ReaderRemote {
    #[command(flatten)]
    remote: Remote,
}

/// `query` options.
#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    remote: ReaderRemote,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: OutFormat,
    /// The SQL (table `traces`, view `sessions`).
    sql: String,
}

/// A cell as text: strings bare, null empty, anything else as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Renders the JSON result as an aligned table (cells cut at 60 characters,
/// with `…`, so one long content value does not flood the terminal).
fn table(body: &Value) -> String {
    let names: Vec<String> = body["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| crate::terminal_text::line(&cell(&c["name"])).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let clip = |s: String| {
        let s = s.replace(['\n', '\r', '\t'], " ");
        let s = crate::terminal_text::line(&s).into_owned();
        if s.chars().count() > 60 {
            format!("{}…", s.chars().take(59).collect::<String>())
        } else {
            s
        }
    };
    let rows: Vec<Vec<String>> = body["rows"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|row| {
                    row.as_array()
                        .map(|cells| cells.iter().map(|c| clip(cell(c))).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut width: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = width.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = width
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(c.chars().count());
                format!("{c}{}", " ".repeat(pad))
            })
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&names);
    out.push('\n');
    out.push_str(
        &width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out.push_str(&format!("({} rows)\n", rows.len()));
    out
}

/// Runs the query; exit 0 on success, 1 when the server refused it, 2 on errors.
pub fn run(a: QueryArgs) -> anyhow::Result<ExitCode> {
    let client = a.remote.remote.client()?;
    let answer = runtime()?.block_on(async {
        match a.format {
            OutFormat::Arrow => client.query_arrow_bytes(&a.sql).await,
            _ => client.query_json(&a.sql).await,
        }
    });
    let bytes = match answer {
        Ok(b) => b,
        Err(tracevault_client::Error::Status(e)) => {
            let msg = serde_json::from_slice::<Value>(&e.body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&e.body).to_string());
            eprintln!(
                "error: the server answered {}: {}",
                e.status,
                crate::terminal_text::line(&msg)
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            let url = format!("{}/v1/query", client.base());
            return Err(anyhow::Error::new(e).context(format!("POST {url}")));
        }
    };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut out = std::io::stdout().lock();
    match a.format {
        OutFormat::Arrow => out.write_all(&bytes)?,
        OutFormat::Json => out.write_all(&bytes)?,
        OutFormat::Table | OutFormat::Csv => {
            let body: Value = serde_json::from_slice(&bytes).context("the answer is not JSON")?;
            if body.get("columns").is_none() {
                bail!("unexpected answer: {body}");
            }
            if matches!(a.format, OutFormat::Table) {
                out.write_all(table(&body).as_bytes())?;
            } else {
                let header: Vec<String> = body["columns"]
                    .as_array()
                    .map(|c| c.iter().map(|c| csv_field(&cell(&c["name"]))).collect())
                    .unwrap_or_default();
                writeln!(out, "{}", header.join(","))?;
                for row in body["rows"].as_array().into_iter().flatten() {
                    let cells: Vec<String> = row
                        .as_array()
                        .map(|r| r.iter().map(|c| csv_field(&cell(c))).collect())
                        .unwrap_or_default();
                    let row = cells.join(",");
                    // Exact bytes for a file or a pipe; escapes shown, not
                    // obeyed, on a terminal.
                    if terminal {
                        writeln!(out, "{}", crate::terminal_text::block(&row))?;
                    } else {
                        writeln!(out, "{row}")?;
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tables_and_csv_fields() {
        let body = json!({"columns": [{"name": "kind"}, {"name": "n"}],
                          "rows": [["prompt", 2], ["a\nb", null]]});
        let t = table(&body);
        assert_eq!(
            t,
            "kind   | n\n-------+--\nprompt | 2\na b\n(2 rows)\n".replace("a b\n", "a b    |\n")
        );
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
