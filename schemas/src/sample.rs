//! Deterministic sample text for load generators and benches: word salad
//! that compresses, masks and escapes as chat text does, unlike a repeated
//! byte (which every codec shrinks to nothing).

/// The words the text is drawn from.
const WORDS: [&str; 16] = [
    "the",
    "model",
    "called",
    "tool",
    "search",
    "with",
    "query",
    "result",
    "reasoning",
    "step",
    "token",
    "agent",
    "plan",
    "observe",
    "answer",
    "because",
];

/// Exactly `n` bytes of space-separated words, the same for the same `seed`
/// and different for different seeds (a xorshift picks the words).
pub fn chat_text(n: usize, seed: u64) -> String {
    let mut s = String::with_capacity(n + 16);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while s.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(WORDS[(x % 16) as usize]);
        s.push(' ');
    }
    s.truncate(n);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_has_the_exact_size_and_depends_on_the_seed() {
        for n in [0, 1, 63, 1024] {
            assert_eq!(chat_text(n, 1).len(), n);
        }
        assert_eq!(chat_text(64, 1), chat_text(64, 1));
        assert_ne!(chat_text(64, 1), chat_text(64, 2));
        assert!(
            chat_text(200, 3)
                .split(' ')
                .all(|w| w.is_empty() || WORDS.iter().any(|x| x.starts_with(w)))
        );
    }
}
