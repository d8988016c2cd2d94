//! Explanation pages on topics that are not diagnostics (`pnnc explain
//! TOPIC`), beside the code pages: `docs/topics/<name>.md`, compiled in.
//! A topic is a lower-case name such as `raw_power`; codes (`E0203`) are
//! looked up first, so the two never collide.

use super::eval::options_help;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic {
    /// The name `pnnc explain` takes, and the page's file name.
    pub name: &'static str,
    /// One-line summary.
    pub title: &'static str,
    /// The page (the same text as `docs/topics/<name>.md`).
    pub text: &'static str,
}

macro_rules! topics {
    ($( $name:literal, $title:literal; )*) => {
        /// Every topic, in the order `pnnc explain` lists them.
        pub const ALL: &[Topic] = &[ $( Topic {
            name: $name,
            title: $title,
            text: include_str!(concat!("../../docs/topics/", $name, ".md")),
        }, )* ];
    };
}

topics! {
    "raw_power", "the paper's own parametrization: a power series of the raw input, and why it overflows";
}

/// The topic named `text`, case-insensitively, with `-` read as `_`.
pub fn find(text: &str) -> Option<&'static Topic> {
    let wanted = text.trim().to_ascii_lowercase().replace('-', "_");
    ALL.iter().find(|t| t.name == wanted)
}

/// "did you mean `raw_power`? (options: ...)" for an unknown name, over the
/// topics and the given codes.
pub fn suggestion(text: &str, codes: &[&str]) -> String {
    let names: Vec<&str> = ALL
        .iter()
        .map(|t| t.name)
        .chain(codes.iter().copied())
        .collect();
    options_help(&names, text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page in docs/topics has an entry (and so is compiled in), every
    /// entry a page with a title and a "When to use it" section.
    #[test]
    fn every_topic_page_is_listed_and_has_a_title() {
        let mut files: Vec<String> = std::fs::read_dir("docs/topics")
            .expect("docs/topics exists")
            .filter_map(|e| e.ok()?.file_name().to_str().map(String::from))
            .filter_map(|n| n.strip_suffix(".md").map(String::from))
            .collect();
        files.sort();
        let mut names: Vec<String> = ALL.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        assert_eq!(files, names);
        for t in ALL {
            assert!(t.text.starts_with("# "), "{} has no title", t.name);
            assert!(t.text.contains("## When to use it"), "{}", t.name);
            assert!(super::super::Code::parse(t.name).is_none());
        }
    }

    #[test]
    fn lookup_ignores_case_and_dashes_and_suggests_near_names() {
        assert_eq!(find("RAW-power").map(|t| t.name), Some("raw_power"));
        assert_eq!(find("raw_powers"), None);
        assert!(suggestion("raw_powr", &["E0100"]).starts_with("did you mean `raw_power`?"));
    }
}
