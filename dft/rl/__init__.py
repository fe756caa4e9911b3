"""The RL baselines: offline (rejection sampling for RFT, DPO pairs) and online (PPO/GRPO through verl's
``main_ppo``: their prompts, the math reward, the Hugging Face rollout for CPUs)."""
