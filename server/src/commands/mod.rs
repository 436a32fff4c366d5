//! The client subcommands: each talks to a running server's HTTP API (see `crate::client`)
//! and prints what an operator needs, or the server's JSON with `--json`.

pub mod dlq;
pub mod rules;
pub mod status;
pub mod tenants;

use serde_json::Value;

/// Prints `rows` under `headers` in columns as wide as their widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", table(headers, rows));
}

pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    push_row(&mut out, &widths, headers.iter().copied());
    for row in rows {
        push_row(&mut out, &widths, row.iter().map(String::as_str));
    }
    out
}

fn push_row<'a>(out: &mut String, widths: &[usize], cells: impl Iterator<Item = &'a str>) {
    let mut text = String::new();
    for (cell, width) in cells.zip(widths) {
        text.push_str(&format!("{cell:<width$}  "));
    }
    out.push_str(text.trim_end());
    out.push('\n');
}

/// Pretty JSON for `--json`.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A JSON value as a table cell: strings without quotes, nothing as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Epoch milliseconds as RFC 3339, `-` when absent.
pub fn time_cell(value: &Value) -> String {
    value
        .as_i64()
        .map(shoal_schemas::time::format_millis)
        .unwrap_or_else(|| "-".to_owned())
}

/// Whole seconds as `1h02m03s`, `4m05s` or `6s`.
pub fn duration_text(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60);
    if hours > 0 {
        format!("{hours}h{minutes:02}m{secs:02}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs:02}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["NAME", "N"],
            &[
                vec!["archive".into(), "1".into()],
                vec!["x".into(), "100".into()],
            ],
        );
        assert_eq!(text, "NAME     N\narchive  1\nx        100\n");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_text(6.2), "6s");
        assert_eq!(duration_text(245.0), "4m05s");
        assert_eq!(duration_text(3723.0), "1h02m03s");
    }
}
