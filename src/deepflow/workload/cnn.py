"""Convolutional networks of FlexFlow's evaluation as operator graphs: AlexNet,
Inception-v3, ResNet-101 (Jia et al. 2019, arXiv 1807.05358, sec. 8).

Shapes follow the original papers in the form of their reference implementations
(torchvision ``alexnet``, ``inception_v3``, ``resnet101``), whose parameter counts are the
published ones: AlexNet 61.1 M, Inception-v3 23.8 M (without the auxiliary classifier),
ResNet-101 44.5 M.

Every convolution is one op: the convolution as an implicit GEMM plus its fused bias or
batch normalization and ReLU as memory traffic (read and write the output twice). Its
parallelizable dimensions are FlexFlow's Table 2 row for a 2-D convolution: ``sample``,
the attributes ``height`` and ``width``, and the parameter ``channel`` (output channels).
Pooling and concatenation split on the sample and on every other dimension as attributes.
Fully connected layers split on the sample and on their output features (parameter).
"""

from __future__ import annotations

from dataclasses import dataclass

from deepflow.workload.opgraph import (
    Dim,
    DimKind,
    Edge,
    Gemm,
    GemmAxis,
    GraphBuilder,
    OpGraph,
    OpKind,
    Window,
    gemm_op,
    memory_op,
)

__all__ = ["alexnet", "inception_v3", "resnet101"]

SPATIAL = ("sample", "height", "width")
ALL_IMAGE = ("sample", "height", "width", "channel")


@dataclass(frozen=True)
class _T:
    """A feature map produced by op ``op`` (``-1``: the input images)."""

    op: int
    c: int
    h: int
    w: int


def _image_dims(batch: int, c: int, h: int, w: int, channel_kind: DimKind) -> tuple[Dim, ...]:
    axis_c = GemmAxis.N if channel_kind is DimKind.PARAMETER else GemmAxis.NONE
    return (
        Dim("sample", batch, DimKind.SAMPLE, GemmAxis.M),
        Dim("height", h, DimKind.ATTRIBUTE, GemmAxis.M),
        Dim("width", w, DimKind.ATTRIBUTE, GemmAxis.M),
        Dim("channel", c, channel_kind, axis_c),
    )


class _Cnn:
    def __init__(self, name: str, batch: int, source: str) -> None:
        self.g = GraphBuilder(name, batch, source)
        self.batch = batch

    def _edges(
        self, *xs: _T, aligned: tuple[str, ...], windows: tuple[Window, ...] = ()
    ) -> tuple[Edge, ...]:
        return tuple(Edge(x.op, aligned=aligned, windows=windows) for x in xs if x.op >= 0)

    def conv(
        self,
        name: str,
        x: _T,
        cout: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        pad: int | tuple[int, int] = 0,
        *,
        bias: bool = False,
        bn: bool = True,
        branch: str = "",
    ) -> _T:
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        ho = (x.h + 2 * ph - kh) // stride + 1
        wo = (x.w + 2 * pw - kw) // stride + 1
        n = self.batch
        params = cout * x.c * kh * kw + (cout if bias else 0) + (2 * cout if bn else 0)
        out = n * cout * ho * wo
        # fused epilogue: bias or batch-norm (read + write) and ReLU (read + write)
        mem = 4.0 * out
        op = gemm_op(
            name,
            OpKind.CONV2D,
            _image_dims(n, cout, ho, wo, DimKind.PARAMETER),
            self._edges(
                x,
                aligned=SPATIAL,
                windows=(Window("height", kh, stride, ph), Window("width", kw, stride, pw)),
            ),
            Gemm(n * ho * wo, cout, x.c * kh * kw),
            params,
            mem=mem,
            branch=branch,
            profile=(
                ("batch", n),
                ("in_channels", x.c),
                ("out_channels", cout),
                ("height", x.h),
                ("width", x.w),
                ("kernel_h", kh),
                ("kernel_w", kw),
                ("stride", stride),
                ("pad_h", ph),
                ("pad_w", pw),
                ("bias", bias),
                ("batch_norm", bn),
            ),
        )
        return _T(self.g.add(op), cout, ho, wo)

    def pool(
        self,
        name: str,
        x: _T,
        kernel: int,
        stride: int,
        pad: int = 0,
        mode: str = "max",
        branch: str = "",
    ) -> _T:
        """Max or average pooling (``mode``), as ``torch.nn.MaxPool2d`` / ``AvgPool2d``."""
        ho = (x.h + 2 * pad - kernel) // stride + 1
        wo = (x.w + 2 * pad - kernel) // stride + 1
        n = self.batch
        out = n * x.c * ho * wo
        op = memory_op(
            name,
            OpKind.POOL2D,
            _image_dims(n, x.c, ho, wo, DimKind.ATTRIBUTE),
            self._edges(
                x,
                aligned=ALL_IMAGE,
                windows=(
                    Window("height", kernel, stride, pad),
                    Window("width", kernel, stride, pad),
                ),
            ),
            n * x.c * x.h * x.w + out,
            flops=float(out * kernel * kernel),
            branch=branch,
            profile=(
                ("batch", n),
                ("channels", x.c),
                ("height", x.h),
                ("width", x.w),
                ("kernel", kernel),
                ("stride", stride),
                ("pad", pad),
                ("mode", mode),
            ),
        )
        return _T(self.g.add(op), x.c, ho, wo)

    def concat(self, name: str, *xs: _T) -> _T:
        n, h, w = self.batch, xs[0].h, xs[0].w
        c = sum(x.c for x in xs)
        op = memory_op(
            name,
            OpKind.CONCAT,
            _image_dims(n, c, h, w, DimKind.ATTRIBUTE),
            self._edges(*xs, aligned=SPATIAL),
            2.0 * n * c * h * w,
            profile=(
                ("batch", n),
                ("channels", tuple(x.c for x in xs)),
                ("height", h),
                ("width", w),
            ),
        )
        return _T(self.g.add(op), c, h, w)

    def add(self, name: str, a: _T, b: _T) -> _T:
        """Residual addition followed by ReLU."""
        n = self.batch
        out = n * a.c * a.h * a.w
        op = memory_op(
            name,
            OpKind.ELEMENTWISE,
            _image_dims(n, a.c, a.h, a.w, DimKind.ATTRIBUTE),
            self._edges(a, b, aligned=ALL_IMAGE),
            3.0 * out + 2.0 * out,
            flops=2.0 * out,
            profile=(
                ("fn", "add_relu"),
                ("batch", n),
                ("channels", a.c),
                ("height", a.h),
                ("width", a.w),
            ),
        )
        return _T(self.g.add(op), a.c, a.h, a.w)

    def linear(self, name: str, x: _T, features: int, *, stage: int = 0, relu: bool = False) -> _T:
        """A fully connected layer (``torch.nn.Linear``), followed by ReLU when ``relu``."""
        n = self.batch
        fin = x.c * x.h * x.w
        dims = (
            Dim("sample", n, DimKind.SAMPLE, GemmAxis.M),
            Dim("channel", features, DimKind.PARAMETER, GemmAxis.N),
        )
        op = gemm_op(
            name,
            OpKind.LINEAR,
            dims,
            self._edges(x, aligned=("sample",)),
            Gemm(n, features, fin),
            fin * features + features,
            mem=2.0 * n * features,
            stage=stage,
            profile=(
                ("rows", n),
                ("in_features", fin),
                ("out_features", features),
                ("relu", relu),
            ),
        )
        return _T(self.g.add(op), features, 1, 1)

    def softmax(self, name: str, x: _T) -> _T:
        n = self.batch
        dims = (
            Dim("sample", n, DimKind.SAMPLE, GemmAxis.NONE),
            Dim("channel", x.c, DimKind.ATTRIBUTE, GemmAxis.NONE),
        )
        op = memory_op(
            name,
            OpKind.SOFTMAX,
            dims,
            self._edges(x, aligned=("sample", "channel")),
            3.0 * n * x.c,
            flops=5.0 * n * x.c,
            profile=(("rows", n), ("cols", x.c)),
        )
        return _T(self.g.add(op), x.c, 1, 1)


def alexnet(batch: int = 64, classes: int = 1000) -> OpGraph:
    """AlexNet as in Krizhevsky, "One weird trick for parallelizing convolutional neural
    networks" (arXiv 1404.5997), the single-tower variant of Krizhevsky, Sutskever, Hinton
    (NIPS 2012) that torchvision implements: five convolutions (64, 192, 384, 256, 256
    channels) and three fully connected layers (9216 -> 4096 -> 4096 -> 1000), 224 x 224
    inputs; 61,100,840 parameters."""
    net = _Cnn("alexnet", batch, "Krizhevsky 2014, arXiv 1404.5997; torchvision alexnet")
    x = _T(-1, 3, 224, 224)
    x = net.conv("conv1", x, 64, 11, 4, 2, bias=True, bn=False)
    x = net.pool("pool1", x, 3, 2)
    x = net.conv("conv2", x, 192, 5, 1, 2, bias=True, bn=False)
    x = net.pool("pool2", x, 3, 2)
    x = net.conv("conv3", x, 384, 3, 1, 1, bias=True, bn=False)
    x = net.conv("conv4", x, 256, 3, 1, 1, bias=True, bn=False)
    x = net.conv("conv5", x, 256, 3, 1, 1, bias=True, bn=False)
    x = net.pool("pool5", x, 3, 2)
    x = net.linear("fc6", x, 4096, stage=1, relu=True)
    x = net.linear("fc7", x, 4096, stage=1, relu=True)
    x = net.linear("fc8", x, classes, stage=1)
    net.softmax("softmax", x)
    return net.g.build()


def resnet101(batch: int = 64, classes: int = 1000) -> OpGraph:
    """ResNet-101 (He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition",
    CVPR 2016, arXiv 1512.03385, Table 1): a 7 x 7 stem, bottleneck blocks [3, 4, 23, 3] of
    widths 64-512 with expansion 4 (stride on the 3 x 3 convolution, torchvision's v1.5),
    batch normalization after every convolution, 224 x 224 inputs; 44,549,160 parameters."""
    net = _Cnn("resnet101", batch, "He et al. 2016, arXiv 1512.03385; torchvision resnet101")
    x = _T(-1, 3, 224, 224)
    x = net.conv("conv1", x, 64, 7, 2, 3)
    x = net.pool("pool1", x, 3, 2, 1)
    for stage, (width, blocks, stride) in enumerate(
        ((64, 3, 1), (128, 4, 2), (256, 23, 2), (512, 3, 2)), start=1
    ):
        for b in range(blocks):
            s = stride if b == 0 else 1
            p = f"layer{stage}.{b}"
            y = net.conv(f"{p}.conv1", x, width, 1)
            y = net.conv(f"{p}.conv2", y, width, 3, s, 1)
            y = net.conv(f"{p}.conv3", y, 4 * width, 1)
            short = x
            if b == 0:
                short = net.conv(f"{p}.downsample", x, 4 * width, 1, s)
            x = net.add(f"{p}.add", y, short)
    x = net.pool("avgpool", x, x.h, 1, mode="avg")
    x = net.linear("fc", x, classes, stage=1)
    net.softmax("softmax", x)
    return net.g.build()


def inception_v3(batch: int = 64, classes: int = 1000) -> OpGraph:
    """Inception-v3 (Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception
    Architecture for Computer Vision", CVPR 2016, arXiv 1512.00567, Table 1 and Figs. 5-7),
    in torchvision's layout: the stem, three 35 x 35 modules (Fig. 5), a grid reduction,
    four 17 x 17 modules with factorized 7 x 7 convolutions (Fig. 6), a grid reduction, two
    8 x 8 modules with expanded filter banks (Fig. 7), 299 x 299 inputs. The auxiliary
    classifier is left out (it is used in training only as a regularizer); 23,834,568
    parameters."""
    net = _Cnn("inception_v3", batch, "Szegedy et al. 2016, arXiv 1512.00567; torchvision")
    x = _T(-1, 3, 299, 299)
    x = net.conv("Conv2d_1a_3x3", x, 32, 3, 2)
    x = net.conv("Conv2d_2a_3x3", x, 32, 3)
    x = net.conv("Conv2d_2b_3x3", x, 64, 3, 1, 1)
    x = net.pool("maxpool1", x, 3, 2)
    x = net.conv("Conv2d_3b_1x1", x, 80, 1)
    x = net.conv("Conv2d_4a_3x3", x, 192, 3)
    x = net.pool("maxpool2", x, 3, 2)

    def module_a(p: str, x: _T, pool_features: int) -> _T:
        b1 = net.conv(f"{p}.branch1x1", x, 64, 1, branch=f"{p}.branch1x1")
        b5 = net.conv(f"{p}.branch5x5_1", x, 48, 1, branch=f"{p}.branch5x5")
        b5 = net.conv(f"{p}.branch5x5_2", b5, 64, 5, 1, 2, branch=f"{p}.branch5x5")
        b3 = net.conv(f"{p}.branch3x3dbl_1", x, 64, 1, branch=f"{p}.branch3x3dbl")
        b3 = net.conv(f"{p}.branch3x3dbl_2", b3, 96, 3, 1, 1, branch=f"{p}.branch3x3dbl")
        b3 = net.conv(f"{p}.branch3x3dbl_3", b3, 96, 3, 1, 1, branch=f"{p}.branch3x3dbl")
        bp = net.pool(f"{p}.branch_pool_avg", x, 3, 1, 1, mode="avg", branch=f"{p}.branch_pool")
        bp = net.conv(f"{p}.branch_pool", bp, pool_features, 1, branch=f"{p}.branch_pool")
        return net.concat(f"{p}.concat", b1, b5, b3, bp)

    def module_b(p: str, x: _T) -> _T:
        b3 = net.conv(f"{p}.branch3x3", x, 384, 3, 2, branch=f"{p}.branch3x3")
        bd = net.conv(f"{p}.branch3x3dbl_1", x, 64, 1, branch=f"{p}.branch3x3dbl")
        bd = net.conv(f"{p}.branch3x3dbl_2", bd, 96, 3, 1, 1, branch=f"{p}.branch3x3dbl")
        bd = net.conv(f"{p}.branch3x3dbl_3", bd, 96, 3, 2, branch=f"{p}.branch3x3dbl")
        bp = net.pool(f"{p}.branch_pool", x, 3, 2, branch=f"{p}.branch_pool")
        return net.concat(f"{p}.concat", b3, bd, bp)

    def module_c(p: str, x: _T, c7: int) -> _T:
        b1 = net.conv(f"{p}.branch1x1", x, 192, 1, branch=f"{p}.branch1x1")
        b7 = net.conv(f"{p}.branch7x7_1", x, c7, 1, branch=f"{p}.branch7x7")
        b7 = net.conv(f"{p}.branch7x7_2", b7, c7, (1, 7), 1, (0, 3), branch=f"{p}.branch7x7")
        b7 = net.conv(f"{p}.branch7x7_3", b7, 192, (7, 1), 1, (3, 0), branch=f"{p}.branch7x7")
        bd = net.conv(f"{p}.branch7x7dbl_1", x, c7, 1, branch=f"{p}.branch7x7dbl")
        bd = net.conv(f"{p}.branch7x7dbl_2", bd, c7, (7, 1), 1, (3, 0), branch=f"{p}.branch7x7dbl")
        bd = net.conv(f"{p}.branch7x7dbl_3", bd, c7, (1, 7), 1, (0, 3), branch=f"{p}.branch7x7dbl")
        bd = net.conv(f"{p}.branch7x7dbl_4", bd, c7, (7, 1), 1, (3, 0), branch=f"{p}.branch7x7dbl")
        bd = net.conv(f"{p}.branch7x7dbl_5", bd, 192, (1, 7), 1, (0, 3), branch=f"{p}.branch7x7dbl")
        bp = net.pool(f"{p}.branch_pool_avg", x, 3, 1, 1, mode="avg", branch=f"{p}.branch_pool")
        bp = net.conv(f"{p}.branch_pool", bp, 192, 1, branch=f"{p}.branch_pool")
        return net.concat(f"{p}.concat", b1, b7, bd, bp)

    def module_d(p: str, x: _T) -> _T:
        b3 = net.conv(f"{p}.branch3x3_1", x, 192, 1, branch=f"{p}.branch3x3")
        b3 = net.conv(f"{p}.branch3x3_2", b3, 320, 3, 2, branch=f"{p}.branch3x3")
        b7 = net.conv(f"{p}.branch7x7x3_1", x, 192, 1, branch=f"{p}.branch7x7x3")
        b7 = net.conv(f"{p}.branch7x7x3_2", b7, 192, (1, 7), 1, (0, 3), branch=f"{p}.branch7x7x3")
        b7 = net.conv(f"{p}.branch7x7x3_3", b7, 192, (7, 1), 1, (3, 0), branch=f"{p}.branch7x7x3")
        b7 = net.conv(f"{p}.branch7x7x3_4", b7, 192, 3, 2, branch=f"{p}.branch7x7x3")
        bp = net.pool(f"{p}.branch_pool", x, 3, 2, branch=f"{p}.branch_pool")
        return net.concat(f"{p}.concat", b3, b7, bp)

    def module_e(p: str, x: _T) -> _T:
        b1 = net.conv(f"{p}.branch1x1", x, 320, 1, branch=f"{p}.branch1x1")
        b3 = net.conv(f"{p}.branch3x3_1", x, 384, 1, branch=f"{p}.branch3x3")
        b3a = net.conv(f"{p}.branch3x3_2a", b3, 384, (1, 3), 1, (0, 1), branch=f"{p}.branch3x3")
        b3b = net.conv(f"{p}.branch3x3_2b", b3, 384, (3, 1), 1, (1, 0), branch=f"{p}.branch3x3")
        bd = net.conv(f"{p}.branch3x3dbl_1", x, 448, 1, branch=f"{p}.branch3x3dbl")
        bd = net.conv(f"{p}.branch3x3dbl_2", bd, 384, 3, 1, 1, branch=f"{p}.branch3x3dbl")
        bda = net.conv(
            f"{p}.branch3x3dbl_3a", bd, 384, (1, 3), 1, (0, 1), branch=f"{p}.branch3x3dbl"
        )
        bdb = net.conv(
            f"{p}.branch3x3dbl_3b", bd, 384, (3, 1), 1, (1, 0), branch=f"{p}.branch3x3dbl"
        )
        bp = net.pool(f"{p}.branch_pool_avg", x, 3, 1, 1, mode="avg", branch=f"{p}.branch_pool")
        bp = net.conv(f"{p}.branch_pool", bp, 192, 1, branch=f"{p}.branch_pool")
        return net.concat(f"{p}.concat", b1, b3a, b3b, bda, bdb, bp)

    x = module_a("Mixed_5b", x, 32)
    x = module_a("Mixed_5c", x, 64)
    x = module_a("Mixed_5d", x, 64)
    x = module_b("Mixed_6a", x)
    for p, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        x = module_c(p, x, c7)
    x = module_d("Mixed_7a", x)
    x = module_e("Mixed_7b", x)
    x = module_e("Mixed_7c", x)
    x = net.pool("avgpool", x, x.h, 1, mode="avg")
    x = net.linear("fc", x, classes, stage=1)
    net.softmax("softmax", x)
    return net.g.build()
