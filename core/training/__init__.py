"""Fine-tuning in Paddle's dynamic graph: `paddiff train lora`.

LoRA factors are added to the very Paddle layers the pipeline runs (`networks()` of the
denoiser and text encoder), trained with the model's own noise schedule and prediction type,
and written as a kohya (default) or diffusers LoRA file that `paddiff.lora` loads.

    data.py         image folders (kohya captions or metadata.jsonl), crop and aspect buckets
    batches.py      which images make each step's batch: deterministic from (seed, step)
    lora_layers.py  LoRA factors hooked onto Linear / Conv2D layers; files in both formats
    objective.py    the noise schedule, the noised latents and the regression target
    resume.py       the resume file (factors, optimizer, schedule, step, configuration)
    trainer.py      the training loop: accumulation, saving, samples, progress
    distributed.py  data parallelism (gradients averaged over ranks)
    memory.py       gradient checkpointing and bf16 autocast
"""
