r"""Supervised training data for ``dft train``: ``python -m dft data <name> --out DIR [...]``.

One module per dataset, ``numina`` (NuminaMath-CoT, the paper's training set), ``math`` (MATH train), ``gsm8k``
(GSM8K train) and ``cft`` (WebInstruct-CFT critiques), all built on :mod:`dft.data.prep`, which holds the reading
(hub or local jsonl/parquet, through :mod:`dft.data.problems`, the reader of the benchmarks too), the validation policy
(``--on-bad-row error|skip``), selection (``--n --selection random|first --seed``), the validation split
(``--val-size``), the token-length limit (``--max-length --tokenizer --over-length``), the data format (``--format
chat|official``), the atomic writes and ``report.json``. Each writes ``DIR/train.parquet`` (and ``DIR/val.parquet``)
with the columns verl's ``MultiTurnSFTDataset`` reads, ``messages`` (one user and one assistant turn), plus ``id``,
``gold`` (the gold final answer, kept for later verification) and ``source``.

Training prompts and evaluation prompts. Training data carries no chat markup: the parquet stores plain
messages and the trainer renders them with the model's own chat template, so the tokens are that template's.
The user message is exactly the one the evaluation harness's default ``chat-cot`` prompt puts in its single user
turn, ``problem + "\n" + "Please reason step by step, and put your final answer within \boxed{}."`` (built from
:data:`dft.models.prompts.PROMPT_TEMPLATES` itself, so the two cannot drift apart), and the assistant turn is the
dataset's own solution, ending in the ``\boxed{}`` answer the grader extracts. A model fine-tuned here is
therefore evaluated on the very prompt it was trained on, followed by the template's generation prompt. CFT is
the exception to the instruction: its user turn is the dataset's own critique instruction and no CoT instruction
is appended.

``--format official`` (``dft.data.numina``; ``setting=paper``) stores what the official DFT code trained on
instead: the bare problem as the user turn and the solution exactly as read (rows without a ``\boxed{}``
kept). Training renders it as that code did (``dft.data.training_format``): the chat template with the generation
prompt,
the solution followed by the tokenizer's eos. A base model without a chat template (Llama) is prompted there
with its evaluation template (``llama-base-boxed``, ``deepseek-math``: the Qwen2.5-Math harness strings of
``dft.models.prompts``), so it is trained and evaluated on the same prompt. The parquet's schema metadata
records the format.

``dft.rl.rft`` (rejection sampling) and ``dft.rl.rl_data`` (RL prompts) read these parquets back by one rule
(``dft.data.problems.problem_of_row``): the problem is the user turn without the CoT instruction (in the ``official``
format, the user turn itself), and samples are verified against ``gold``.

Public API: :func:`dft.data.prep.prepare` with a dataset's ``SPEC`` and :class:`dft.data.prep.PrepOptions`
(returns the report), and each module's ``main(argv)``.
"""
