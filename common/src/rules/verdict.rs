//! The outcome of checking a manifest: violations that refuse it and warnings that do not.

use std::fmt;

/// A broken rule: which field, and what is wrong with it and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Field path such as `spec.users.foo_user`.
    pub field: String,
    /// What is wrong, with the value and the fix.
    pub message: String,
    /// Short stable name of the rule, for metrics and events.
    pub rule: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Everything found about one manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Reasons to refuse the manifest; empty means allowed.
    pub violations: Vec<Violation>,
    /// Messages for the user that do not refuse it (kubectl prints them as warnings).
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Records a violation.
    pub fn deny(
        &mut self,
        rule: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.violations.push(Violation {
            field: field.into(),
            message: message.into(),
            rule,
        });
    }

    /// Records a warning.
    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// Adds another verdict's findings.
    pub fn merge(&mut self, other: Verdict) {
        self.violations.extend(other.violations);
        self.warnings.extend(other.warnings);
    }

    /// True when nothing refuses the manifest.
    pub fn allowed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The denial message: every violation, one per line after the first.
    pub fn message(&self) -> String {
        match self.violations.as_slice() {
            [] => String::new(),
            [one] => one.to_string(),
            many => {
                let lines: Vec<String> = many.iter().map(|v| format!("- {v}")).collect();
                format!("{} problems:\n{}", many.len(), lines.join("\n"))
            }
        }
    }
}
