//! The one table the benchmark prints: figure, value, target, met.

use std::time::Duration;

pub struct Row {
    figure: String,
    value: String,
    target: String,
    /// `None` for a figure given for context, with no target of its own.
    met: Option<bool>,
}

#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    pub fn add(&mut self, figure: &str, value: String, target: &str, met: Option<bool>) {
        self.rows.push(Row {
            figure: figure.to_string(),
            value,
            target: target.to_string(),
            met,
        });
    }

    /// Targets missed.
    pub fn missed(&self) -> Vec<&str> {
        self.rows
            .iter()
            .filter(|row| row.met == Some(false))
            .map(|row| row.figure.as_str())
            .collect()
    }

    /// A Markdown table, padded so that it also reads as plain text.
    pub fn render(&self) -> String {
        let header = ["figure", "value", "target", "met?"];
        let cells: Vec<[String; 4]> = self
            .rows
            .iter()
            .map(|row| {
                let met = match row.met {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "",
                };
                [
                    row.figure.clone(),
                    row.value.clone(),
                    row.target.clone(),
                    met.to_string(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }

        let line = |cells: [&str; 4]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut text = line(header);
        let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
        text.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        for row in &cells {
            text.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
        }
        text
    }
}

pub fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
