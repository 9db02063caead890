//! `skydeck catalog`: the metric catalog as a Markdown table (the README's) or JSON.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use skydeck_core::catalog::ALL;

/// Output format of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CatalogFormat {
    /// A Markdown table.
    Markdown,
    /// One JSON object per metric and line.
    Json,
}

/// Flags of `skydeck catalog`.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: CatalogFormat,
}

/// Renders the catalog as the Markdown table the README embeds.
pub fn markdown() -> String {
    let mut out = String::from(
        "| Datadog name | Prometheus name | unit | tags | meaning |\n|---|---|---|---|---|\n",
    );
    for d in ALL {
        let unit = match d.unit.datadog_per_unit() {
            Some(per) => format!("{}/{per}", d.unit.datadog_name()),
            None => d.unit.datadog_name().to_string(),
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} |\n",
            d.name,
            d.prometheus,
            unit,
            d.tags.join(", "),
            d.help
        ));
    }
    out
}

/// Prints the catalog.
pub fn run(args: CatalogArgs) -> anyhow::Result<ExitCode> {
    match args.format {
        CatalogFormat::Markdown => print!("{}", markdown()),
        CatalogFormat::Json => {
            for d in ALL {
                println!(
                    "{{\"name\":{:?},\"prometheus\":{:?},\"unit\":{:?},\"tags\":{:?},\"help\":{:?}}}",
                    d.name,
                    d.prometheus,
                    d.unit.datadog_name(),
                    d.tags,
                    d.help
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn readme_embeds_the_catalog() {
        let readme = include_str!("../../../../README.md");
        assert!(
            readme.contains(&super::markdown()),
            "README.md's metric table is out of date: regenerate it with `skydeck catalog`"
        );
    }
}
