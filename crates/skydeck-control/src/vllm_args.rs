//! `engine_args` (seed 003's `vllm_args`): the one free-text field of a launch request. It is
//! split like a shell would split it (`shlex`), every flag must be on the engine's allow-list
//! (vLLM's or llama.cpp's) with a value of the right shape, and the result is a list of
//! separate arguments that the task passes to the engine one by one, each quoted. Nothing in it
//! can become shell syntax, another flag of skydeck's own (`--model`, `--host`, `--port`) or an
//! option that makes the engine execute code from the model repository
//! (`--trust-remote-code`) or read or serve files of the node (`--path`, `--lora`).

use std::sync::LazyLock;

use regex::Regex;
use skydeck_contract::Engine;

/// The shape a flag's value must have.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A flag without a value.
    Switch,
    /// An integer in the range.
    Int(i64, i64),
    /// A decimal number in the range (exclusive low, inclusive high).
    Fraction(f64, f64),
    /// A decimal number in the range (both ends inclusive: a temperature of 0 is greedy).
    Decimal(f64, f64),
    /// One of the listed words.
    OneOf(&'static [&'static str]),
    /// A name: letters, digits and `._-/`, up to 128 characters.
    Name,
}

/// The allowed flags. Each is a real vLLM engine or server option.
const FLAGS: &[(&str, Shape)] = &[
    ("--tensor-parallel-size", Shape::Int(1, 64)),
    ("--pipeline-parallel-size", Shape::Int(1, 64)),
    ("--data-parallel-size", Shape::Int(1, 64)),
    ("--max-model-len", Shape::Int(1, 10_000_000)),
    ("--max-num-seqs", Shape::Int(1, 65_536)),
    ("--max-num-batched-tokens", Shape::Int(1, 10_000_000)),
    ("--gpu-memory-utilization", Shape::Fraction(0.0, 1.0)),
    ("--swap-space", Shape::Int(0, 1024)),
    (
        "--block-size",
        Shape::OneOf(&["8", "16", "32", "64", "128"]),
    ),
    ("--seed", Shape::Int(0, i32::MAX as i64)),
    (
        "--dtype",
        Shape::OneOf(&["auto", "half", "float16", "bfloat16", "float", "float32"]),
    ),
    (
        "--kv-cache-dtype",
        Shape::OneOf(&["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]),
    ),
    (
        "--quantization",
        Shape::OneOf(&[
            "awq",
            "awq_marlin",
            "gptq",
            "gptq_marlin",
            "fp8",
            "bitsandbytes",
            "compressed-tensors",
            "gguf",
            "marlin",
        ]),
    ),
    (
        "--tokenizer-mode",
        Shape::OneOf(&["auto", "slow", "mistral"]),
    ),
    ("--served-model-name", Shape::Name),
    ("--revision", Shape::Name),
    ("--max-logprobs", Shape::Int(0, 1024)),
    ("--max-loras", Shape::Int(1, 256)),
    ("--max-lora-rank", Shape::Int(1, 512)),
    ("--enforce-eager", Shape::Switch),
    ("--enable-prefix-caching", Shape::Switch),
    ("--no-enable-prefix-caching", Shape::Switch),
    ("--enable-chunked-prefill", Shape::Switch),
    ("--enable-lora", Shape::Switch),
    ("--disable-log-requests", Shape::Switch),
    ("--disable-log-stats", Shape::Switch),
];

/// The allowed llama.cpp flags. Each is a real `llama-server` option; only the long spelling
/// is accepted, so one list covers each option once.
const LLAMACPP_FLAGS: &[(&str, Shape)] = &[
    ("--ctx-size", Shape::Int(0, 10_000_000)),
    ("--n-gpu-layers", Shape::Int(0, 100_000)),
    ("--parallel", Shape::Int(1, 1024)),
    ("--threads", Shape::Int(1, 1024)),
    ("--threads-batch", Shape::Int(1, 1024)),
    ("--batch-size", Shape::Int(1, 10_000_000)),
    ("--ubatch-size", Shape::Int(1, 10_000_000)),
    ("--n-predict", Shape::Int(0, 10_000_000)),
    ("--seed", Shape::Int(0, u32::MAX as i64)),
    ("--temp", Shape::Decimal(0.0, 10.0)),
    ("--top-k", Shape::Int(0, 100_000)),
    ("--top-p", Shape::Decimal(0.0, 1.0)),
    ("--min-p", Shape::Decimal(0.0, 1.0)),
    ("--repeat-penalty", Shape::Decimal(0.0, 10.0)),
    ("--main-gpu", Shape::Int(0, 63)),
    ("--split-mode", Shape::OneOf(&["none", "layer", "row"])),
    ("--flash-attn", Shape::OneOf(&["on", "off", "auto"])),
    (
        "--cache-type-k",
        Shape::OneOf(&[
            "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1",
        ]),
    ),
    (
        "--cache-type-v",
        Shape::OneOf(&[
            "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1",
        ]),
    ),
    ("--alias", Shape::Name),
    ("--cont-batching", Shape::Switch),
    ("--no-cont-batching", Shape::Switch),
    ("--no-mmap", Shape::Switch),
    ("--mlock", Shape::Switch),
    ("--jinja", Shape::Switch),
];

/// llama.cpp flags skydeck sets itself or that reach beyond the model, with the reason.
const LLAMACPP_RESERVED: &[(&str, &str)] = &[
    ("--model", "the model comes from the `model` field"),
    ("-m", "the model comes from the `model` field"),
    ("--hf-repo", "the model comes from the `model` field"),
    ("-hf", "the model comes from the `model` field"),
    ("--host", "skydeck binds llama-server itself"),
    ("--port", "skydeck serves llama-server on port 8000"),
    ("--metrics", "skydeck always enables the metrics endpoint"),
    ("--api-key", "credentials never go in engine_args"),
    ("--api-key-file", "it reads a file of the node"),
    ("--path", "it serves files of the node"),
    ("--lora", "it loads files of the node"),
];

/// Flags skydeck sets itself, with the reason a request may not.
const RESERVED: &[(&str, &str)] = &[
    ("--model", "the model comes from the `model` field"),
    ("--host", "skydeck binds vLLM itself"),
    ("--port", "skydeck serves vLLM on port 8000"),
    (
        "--trust-remote-code",
        "it runs code from the model repository on the node",
    ),
    ("--api-key", "credentials never go in vllm_args"),
];

/// Longest `vllm_args` accepted, in bytes.
pub const MAX_LEN: usize = 2048;

static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$").expect("regex"));

/// Splits and checks `vllm_args` against vLLM's allow-list. The error says which argument broke
/// which rule.
pub fn parse(text: &str) -> Result<Vec<String>, String> {
    parse_with(text, "vLLM", FLAGS, RESERVED)
}

/// Splits and checks `engine_args` against `engine`'s allow-list. The error names the argument
/// by its position (`[2]`, counting the split words from 0) and says what was expected.
pub fn parse_for(engine: Engine, text: &str) -> Result<Vec<String>, String> {
    match engine {
        Engine::Vllm => parse(text),
        Engine::Llamacpp => parse_with(text, "llama.cpp", LLAMACPP_FLAGS, LLAMACPP_RESERVED),
    }
}

fn parse_with(
    text: &str,
    engine: &str,
    flags: &[(&str, Shape)],
    reserved: &[(&str, &str)],
) -> Result<Vec<String>, String> {
    if text.len() > MAX_LEN {
        return Err(format!("is longer than {MAX_LEN} bytes"));
    }
    let words = shlex::split(text).ok_or("has an unbalanced quote or a trailing backslash")?;
    let mut out = Vec::with_capacity(words.len());
    let mut it = words.into_iter().enumerate().peekable();
    while let Some((at, word)) = it.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (word.clone(), None),
        };
        if let Some((_, why)) = reserved.iter().find(|(f, _)| *f == flag) {
            return Err(format!("[{at}] may not set {flag}: {why}"));
        }
        let Some((_, shape)) = flags.iter().find(|(f, _)| *f == flag) else {
            return Err(format!(
                "[{at}] has {} which is not an allowed {engine} flag (allowed: {})",
                printable(&flag),
                flags.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ")
            ));
        };
        if let Shape::Switch = shape {
            if inline.is_some() {
                return Err(format!("[{at}] {flag} takes no value"));
            }
            out.push(flag);
            continue;
        }
        let (value_at, value) = match inline {
            Some(v) => (at, v),
            None => match it.next_if(|(_, w)| !w.starts_with("--")) {
                Some(v) => v,
                None => return Err(format!("[{at}] {flag} needs a value")),
            },
        };
        check(&flag, *shape, &value).map_err(|e| format!("[{value_at}] {e}"))?;
        out.push(flag);
        out.push(value);
    }
    Ok(out)
}

fn check(flag: &str, shape: Shape, value: &str) -> Result<(), String> {
    let ok = match shape {
        Shape::Switch => true,
        Shape::Int(lo, hi) => value
            .parse::<i64>()
            .is_ok_and(|v| (lo..=hi).contains(&v) && value.bytes().all(|b| b.is_ascii_digit())),
        Shape::Fraction(lo, hi) => {
            value.len() <= 12
                && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && value.parse::<f64>().is_ok_and(|v| v > lo && v <= hi)
        }
        Shape::Decimal(lo, hi) => {
            value.len() <= 12
                && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && value.parse::<f64>().is_ok_and(|v| v >= lo && v <= hi)
        }
        Shape::OneOf(words) => words.contains(&value),
        Shape::Name => NAME.is_match(value) && !value.contains(".."),
    };
    if ok {
        return Ok(());
    }
    let expected = match shape {
        Shape::Switch => String::new(),
        Shape::Int(lo, hi) => format!("an integer from {lo} to {hi}"),
        Shape::Fraction(lo, hi) => format!("a number above {lo} and at most {hi}"),
        Shape::Decimal(lo, hi) => format!("a number from {lo} to {hi}"),
        Shape::OneOf(words) => format!("one of {}", words.join(", ")),
        Shape::Name => "a name of letters, digits and ._-/ (at most 128)".into(),
    };
    Err(format!(
        "{flag} has value {} but expects {expected}",
        printable(value)
    ))
}

/// Whitespace that separates words, as `shlex` splits them.
const WS: &str = "[ \\t\\n]";

/// The JSON Schema pattern of `vllm_args`/`engine_args`: every string it matches, [`parse`]
/// accepts. It is the canonical spelling (unquoted words separated by whitespace, a trailing
/// `#` comment) of every allowed flag with a value of its shape, so a generator working from
/// the document never builds a request the server refuses. [`parse`] also reads shell
/// quoting, which the pattern leaves out: a regular expression cannot follow it.
pub fn pattern() -> String {
    pattern_for(Engine::Vllm)
}

/// [`pattern`] for `engine`'s allow-list ([`parse_for`] accepts every string it matches).
pub fn pattern_for(engine: Engine) -> String {
    let flags = match engine {
        Engine::Vllm => FLAGS,
        Engine::Llamacpp => LLAMACPP_FLAGS,
    };
    let words: Vec<String> = flags
        .iter()
        .map(|(flag, shape)| {
            let flag = regex::escape(flag);
            match value_pattern(*shape) {
                None => flag,
                Some(v) => format!("{flag}(=|{WS}+)({v})"),
            }
        })
        .collect();
    let word = format!("({})", words.join("|"));
    // A comment starts a word: after the words only past whitespace.
    let comment = "#[^\\n]*";
    format!("^{WS}*({word}({WS}+{word})*({WS}*|{WS}+{comment})|{comment})?$")
}

/// The pattern of a value of `shape` (`None` for a switch). Integers may have leading zeros,
/// as [`check`] reads them; fractions and names are a subset of what [`check`] accepts that a
/// regular expression without look-ahead can state (at most 12 characters; no `..`).
fn value_pattern(shape: Shape) -> Option<String> {
    Some(match shape {
        Shape::Switch => return None,
        Shape::Int(lo, hi) => format!("0*({})", int_range(lo as u64, hi as u64).join("|")),
        Shape::Fraction(lo, hi) => {
            assert!(lo == 0.0 && hi == 1.0, "a fraction pattern for (0, 1] only");
            r"0{0,3}\.[0-9]{0,4}[1-9]0{0,2}|0{0,4}1(\.0{0,6})?".to_string()
        }
        // A subset of what [`check`] reads: digits with up to four decimals, or a leading dot.
        Shape::Decimal(lo, hi) => {
            assert!(
                lo == 0.0 && (hi == 1.0 || hi == 10.0),
                "a decimal pattern for [0, 1] or [0, 10] only"
            );
            if hi == 1.0 {
                r"0(\.[0-9]{1,4})?|\.[0-9]{1,4}|1(\.0{1,4})?".to_string()
            } else {
                r"[0-9](\.[0-9]{1,4})?|\.[0-9]{1,4}|10(\.0{1,4})?".to_string()
            }
        }
        Shape::OneOf(words) => words
            .iter()
            .map(|w| regex::escape(w))
            .collect::<Vec<_>>()
            .join("|"),
        Shape::Name => r"[A-Za-z0-9](\.?[A-Za-z0-9_/-]){0,63}\.?".to_string(),
    })
}

/// Alternatives matching exactly the decimal numbers `lo..=hi` without leading zeros.
fn int_range(lo: u64, hi: u64) -> Vec<String> {
    let mut out = Vec::new();
    let (mut from, mut len) = (lo, lo.to_string().len());
    while from <= hi {
        let top = 10u64.pow(len as u32) - 1;
        let to = top.min(hi);
        out.extend(same_len(&from.to_string(), &to.to_string()));
        from = top + 1;
        len += 1;
    }
    out
}

/// Alternatives matching exactly the digit strings from `lo` to `hi`, both of one length.
fn same_len(lo: &str, hi: &str) -> Vec<String> {
    let (Some(a), Some(b)) = (lo.bytes().next(), hi.bytes().next()) else {
        return vec![String::new()];
    };
    let (rl, rh) = (&lo[1..], &hi[1..]);
    let prefixed = |d: u8, v: Vec<String>| -> Vec<String> {
        v.into_iter().map(|s| format!("{}{s}", d as char)).collect()
    };
    if a == b {
        return prefixed(a, same_len(rl, rh));
    }
    let n = rl.len();
    let mut out = Vec::new();
    let mut start = a;
    if !rl.bytes().all(|c| c == b'0') {
        out.extend(prefixed(a, same_len(rl, &"9".repeat(n))));
        start = a + 1;
    }
    let mut end = b;
    let mut tail = Vec::new();
    if !rh.bytes().all(|c| c == b'9') {
        tail = prefixed(b, same_len(&"0".repeat(n), rh));
        end = b - 1;
    }
    if start <= end {
        let class = if start == end {
            (start as char).to_string()
        } else {
            format!("[{}-{}]", start as char, end as char)
        };
        let rest = if n == 0 {
            String::new()
        } else {
            format!("[0-9]{{{n}}}")
        };
        out.push(format!("{class}{rest}"));
    }
    out.extend(tail);
    out
}

/// A value safe to put in an error message: quoted, control characters escaped, shortened.
pub(crate) fn printable(s: &str) -> String {
    let short: String = s.chars().take(64).collect();
    let more = if s.chars().count() > 64 { "…" } else { "" };
    format!("{:?}{more}", short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_examples_parse() {
        assert_eq!(
            parse("--tensor-parallel-size 2 --max-model-len 4096").unwrap(),
            ["--tensor-parallel-size", "2", "--max-model-len", "4096"]
        );
        assert_eq!(
            parse("--gpu-memory-utilization=0.9 --enforce-eager").unwrap(),
            ["--gpu-memory-utilization", "0.9", "--enforce-eager"]
        );
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn hostile_input_is_rejected_with_the_rule() {
        for (input, needle) in [
            ("--max-model-len 4096; rm -rf /", "expects an integer"),
            ("--enforce-eager; rm -rf /", "not an allowed"),
            ("--max-model-len $(id)", "expects an integer"),
            ("--served-model-name `id`", "expects a name"),
            ("--model evil/model", "may not set --model"),
            ("--trust-remote-code", "runs code"),
            ("--dtype 'half", "unbalanced quote"),
            ("--enforce-eager=1", "takes no value"),
            ("--max-model-len", "needs a value"),
            ("--gpu-memory-utilization 1e9", "expects a number"),
            ("--max-model-len 0x10", "expects an integer"),
            ("--revision ../../etc", "expects a name"),
        ] {
            let err = parse(input).unwrap_err();
            assert!(err.contains(needle), "{input}: {err}");
        }
        assert!(parse(&"--enforce-eager ".repeat(200)).is_err());
    }

    #[test]
    fn llamacpp_flags_have_their_own_list() {
        assert_eq!(
            parse_for(Engine::Llamacpp, "--ctx-size 8192 --temp 0 --jinja").unwrap(),
            ["--ctx-size", "8192", "--temp", "0", "--jinja"]
        );
        for (input, needle) in [
            (
                "--ctx-size 8192 --n-gpu-layers x",
                "[3] --n-gpu-layers has value \"x\" but expects an integer",
            ),
            (
                "--tensor-parallel-size 2",
                "[0] has \"--tensor-parallel-size\" which is not an allowed llama.cpp flag",
            ),
            ("-c 4096", "not an allowed llama.cpp flag"),
            ("--jinja --hf-repo evil/model", "[1] may not set --hf-repo"),
            ("--path /etc", "serves files"),
            ("--temp 11", "expects a number from 0 to 10"),
            ("--threads=$(id)", "[0] --threads has value"),
        ] {
            let err = parse_for(Engine::Llamacpp, input).unwrap_err();
            assert!(err.contains(needle), "{input}: {err}");
        }
        // And the other way: a llama.cpp flag is not a vLLM one.
        assert!(parse_for(Engine::Vllm, "--ctx-size 1").is_err());
    }

    #[test]
    fn int_ranges_match_exactly_their_numbers() {
        for (lo, hi) in [
            (0, 0),
            (1, 64),
            (0, 1024),
            (1, 256),
            (7, 1203),
            (1, 99),
            (10, 10),
        ] {
            let re = regex::Regex::new(&format!("^({})$", int_range(lo, hi).join("|"))).unwrap();
            for v in 0..2000u64 {
                assert_eq!(
                    re.is_match(&v.to_string()),
                    (lo..=hi).contains(&v),
                    "{lo}..={hi}: {v}"
                );
            }
        }
    }

    #[test]
    fn the_llamacpp_pattern_matches_only_what_parse_for_accepts() {
        let re = regex::Regex::new(&pattern_for(Engine::Llamacpp)).unwrap();
        for ok in [
            "",
            "--ctx-size 4096 --n-gpu-layers 99",
            "--temp 0.7 --top-p .95 --min-p 0 --repeat-penalty 10.0",
            "--flash-attn on --cache-type-k q8_0 --jinja # chat templates",
            "--alias smollm2 --parallel=4",
        ] {
            assert!(re.is_match(ok), "{ok:?} does not match");
            assert!(
                parse_for(Engine::Llamacpp, ok).is_ok(),
                "{ok:?}: {:?}",
                parse_for(Engine::Llamacpp, ok)
            );
        }
        for bad in [
            "--temp 11",
            "--top-p 1.5",
            "--parallel 0",
            "--flash-attn yes",
            "--tensor-parallel-size 2",
            "--hf-repo a/b",
            "-c 4096",
        ] {
            assert!(!re.is_match(bad), "{bad:?} matches");
            assert!(
                parse_for(Engine::Llamacpp, bad).is_err(),
                "{bad:?} is accepted"
            );
        }
    }

    #[test]
    fn the_pattern_matches_only_what_parse_accepts() {
        let re = regex::Regex::new(&pattern()).unwrap();
        for ok in [
            "",
            " ",
            "# a comment",
            "--tensor-parallel-size 2 --max-model-len 4096",
            "--gpu-memory-utilization=0.9 --enforce-eager",
            "--gpu-memory-utilization .5\t--seed=0002147483647 # why",
            "--served-model-name org/name.v1 --revision main --dtype bfloat16",
            "--gpu-memory-utilization 1.000 --block-size 128\n",
        ] {
            assert!(re.is_match(ok), "{ok:?} does not match");
            assert!(parse(ok).is_ok(), "{ok:?}: {:?}", parse(ok));
        }
        for bad in [
            "--seed 2147483648",
            "--tensor-parallel-size 0",
            "--tensor-parallel-size 65",
            "--gpu-memory-utilization 0",
            "--gpu-memory-utilization 1.01",
            "--revision ../x",
            "--enforce-eager=1",
            "--model a/b",
            "--max-model-len",
            "0000",
            "--seed 1#x",
        ] {
            assert!(!re.is_match(bad), "{bad:?} matches");
            assert!(parse(bad).is_err(), "{bad:?} is accepted");
        }
    }
}
