//! The closed set of event kinds (SPEC section 4).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What an event records. The set is closed so that queries and the replayer
/// can rely on it; free-form detail goes into `name` and `attributes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Input given to a model.
    Prompt,
    /// A reasoning step.
    Reasoning,
    /// A tool invocation.
    ToolCall,
    /// What a tool returned.
    ToolResult,
    /// A model's answer.
    Response,
    /// A chat message that fits none of the above.
    Message,
    /// Terminal-style session input.
    Input,
    /// Terminal-style session output.
    Output,
    /// A failure.
    Error,
    /// A note added by a person or a system.
    Annotation,
    /// A generic trace span.
    Span,
}

impl Kind {
    /// Every kind, in SPEC order.
    pub const ALL: [Kind; 11] = [
        Kind::Prompt,
        Kind::Reasoning,
        Kind::ToolCall,
        Kind::ToolResult,
        Kind::Response,
        Kind::Message,
        Kind::Input,
        Kind::Output,
        Kind::Error,
        Kind::Annotation,
        Kind::Span,
    ];

    /// The names, for error messages.
    pub const ALL_NAMES: &'static str = "prompt, reasoning, tool_call, tool_result, response, message, input, output, error, annotation, span";

    /// The wire name (`tool_call`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Prompt => "prompt",
            Kind::Reasoning => "reasoning",
            Kind::ToolCall => "tool_call",
            Kind::ToolResult => "tool_result",
            Kind::Response => "response",
            Kind::Message => "message",
            Kind::Input => "input",
            Kind::Output => "output",
            Kind::Error => "error",
            Kind::Annotation => "annotation",
            Kind::Span => "span",
        }
    }

    /// Parses a wire name; `None` for anything not in the set.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::String(k.as_str().into())
            );
            assert!(Kind::ALL_NAMES.contains(k.as_str()));
        }
        assert_eq!(Kind::parse("Prompt"), None);
    }
}
