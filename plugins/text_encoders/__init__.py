"""Text encoders: prompts -> the conditioning the denoiser cross-attends to.

clip.py            the CLIP text transformer (Stable Diffusion 1.x / 2.x)
clip_tokenizer.py  CLIP's byte-level BPE tokenizer (vocab.json + merges.txt)
bert.py            BERT-style encoders (Taiyi-Stable-Diffusion, Chinese-CLIP text towers)
xlm_roberta.py     XLM-R + projection (AltDiffusion's RobertaSeriesModelWithTransformation)
wordpiece.py       BERT's WordPiece tokenizer (vocab.txt)
xlmr_tokenizer.py  XLM-R's SentencePiece tokenizer (sentencepiece.bpe.model)
"""
