//! The `local` provider: offline, deterministic and free. It answers with the last user
//! message and counts tokens from the actual text, so demos and tests work without keys.

use super::{Completion, Message};

pub const MODEL: &str = "local-echo";

/// Tokens as a tokenizer would roughly see them: each run of letters/digits counts one
/// token per 4 characters (rounded up), each other visible character one token.
pub fn count_tokens(text: &str) -> u64 {
    let mut n = 0u64;
    let mut run = 0u64;
    for c in text.chars() {
        if c.is_alphanumeric() {
            run += 1;
        } else {
            n += run.div_ceil(4);
            run = 0;
            if !c.is_whitespace() {
                n += 1;
            }
        }
    }
    n + run.div_ceil(4)
}

/// The reply: `"local-echo: <last user message>"`, cut to `max_tokens` when given.
pub fn complete(messages: &[Message], max_tokens: Option<u32>) -> Completion {
    let last = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map_or("", |m| m.content.as_str());
    let mut reply = format!("local-echo: {last}");
    if let Some(max) = max_tokens {
        while count_tokens(&reply) > u64::from(max) {
            // Drop the last word until it fits (at least the prefix stays).
            match reply.trim_end().rfind(char::is_whitespace) {
                Some(i) if i > "local-echo:".len() => reply.truncate(i),
                _ => {
                    reply = "local-echo:".to_string();
                    break;
                }
            }
        }
    }
    // OpenAI counts ~3 tokens of framing per message and 3 to prime the reply.
    let prompt = messages
        .iter()
        .map(|m| count_tokens(&m.content) + count_tokens(&m.role) + 3)
        .sum::<u64>()
        + 3;
    Completion {
        completion_tokens: count_tokens(&reply),
        output: serde_json::Value::String(reply),
        model: MODEL.to_string(),
        prompt_tokens: prompt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn deterministic_with_honest_counts() {
        let m = [msg("system", "Be brief."), msg("user", "What is 2+2?")];
        let a = complete(&m, None);
        assert_eq!(a, complete(&m, None));
        assert_eq!(a.output, "local-echo: What is 2+2?");
        assert_eq!(count_tokens("What is 2+2?"), 6); // What, is, 2, +, 2, ?
        assert_eq!(
            a.completion_tokens,
            count_tokens("local-echo: What is 2+2?")
        );
        assert!(a.prompt_tokens > count_tokens("Be brief.") + count_tokens("What is 2+2?"));
        let short = complete(&[msg("user", "one two three four five six")], Some(5));
        assert!(short.completion_tokens <= 5, "{short:?}");
        assert!(short.output.as_str().unwrap().starts_with("local-echo:"));
    }
}
