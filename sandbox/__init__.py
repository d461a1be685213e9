"""The evaluation sandbox: loads a task, runs an untrusted candidate kernel in a separate
process, and returns a `Verdict` that says whether it is correct, honest and fast."""
