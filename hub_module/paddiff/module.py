"""The PaddleHub module `paddiff`: a thin adapter over the `paddiff` library.

This is a placeholder until the serving issue fills it in: it declares the module so that
`hub install hub_module/paddiff` works, and reports that generation is not available yet.
"""

from paddlehub.module.module import moduleinfo


@moduleinfo(
    name="paddiff",
    version="0.1.0",
    summary="Text-to-image diffusion on PaddlePaddle (placeholder module).",
    author="paddiff",
    author_email="",
    type="image/text_to_image",
)
class Paddiff:
    def text_to_image(self, *args, **kwargs):
        raise NotImplementedError("the paddiff PaddleHub module is not implemented yet")
