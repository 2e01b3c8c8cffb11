"""The network spec (distnn.architecture): parsed, printed, normalized, measured against
hand-counted shapes, and every spec that cannot be built refused in one line naming
the item, with the boundary case beside it accepted."""

from __future__ import annotations

import pytest

from distnn import architecture
from distnn.architecture import SpecError, check, n_params, parse, plan, text, widths
from distnn.conv import ConvPool
from distnn.convnet import ConvNet

NIELSEN = "1x28x28,conv20x5,pool2,conv40x5,pool2,100,10"


@pytest.mark.parametrize("spec", [
    NIELSEN,
    "1x8x8,conv3x3:same,pool2,10",
    "3x9x7,conv4x2,pool3,conv2x3:same,6,4",
    "784,100,10",
    "1x4x4,7,3",
])
def test_text_and_parse_round_trip(spec):
    layers = parse(spec)
    assert text(layers) == spec
    assert parse(text(layers)) == layers


def test_parse_normalizes_what_is_typed():
    assert parse(NIELSEN) == ["1x28x28", "conv20x5", "pool2", "conv40x5", "pool2", 100, 10]
    assert parse("28x28, CONV20x5:Valid ,Pool02,0100,10") == \
        ["1x28x28", "conv20x5", "pool2", 100, 10]
    assert parse("2x6x6,conv3x3:same,10") == ["2x6x6", "conv3x3:same", 10]
    assert architecture.image((28, 28)) == architecture.image((1, 28, 28)) == "1x28x28"
    assert architecture.shape_of("3x32x30") == (3, 32, 30)
    assert architecture.shape_of(784) is None and architecture.shape_of("conv2x3") is None


def test_a_spec_without_conv_layers_is_an_mlps_sizes():
    assert check(parse("784,100,10")) == [784, 100, 10]
    assert check(parse("1x4x4,7,3")) == [16, 7, 3]  # the image counts as its features
    assert check(parse("2x28x28,10")) == [1568, 10]
    assert check(parse(NIELSEN)) == parse(NIELSEN)  # a conv net's spec as it is
    assert not architecture.is_conv(parse("1x4x4,7,3"))
    assert architecture.is_conv(parse(NIELSEN))


def test_nielsens_network_by_hand():
    convs, dense = plan(parse(NIELSEN))
    assert convs == [ConvPool(28, 28, 1, 20, 5, pad=0, pool=2),
                     ConvPool(12, 12, 20, 40, 5, pad=0, pool=2)]
    assert [c.conv_shape for c in convs] == [(24, 24, 20), (8, 8, 40)]
    assert [c.out_shape for c in convs] == [(12, 12, 20), (4, 4, 40)]
    assert dense == [640, 100, 10]
    assert widths(parse(NIELSEN)) == [784, 2880, 640, 100, 10]
    # 20 (25 + 1) + 40 (20 * 25 + 1) + 640 * 100 + 100 + 100 * 10 + 10
    assert n_params(parse(NIELSEN)) == 520 + 20040 + 64100 + 1010


def test_same_padding_partial_windows_and_channels_by_hand():
    convs, dense = plan(parse("2x7x5,conv3x5:same,pool2,conv4x3:same,pool2,6"))
    assert convs == [ConvPool(7, 5, 2, 3, 5, pad=2, pool=2),
                     ConvPool(3, 2, 3, 4, 3, pad=1, pool=2)]
    assert convs[0].conv_shape == (7, 5, 3) and convs[0].out_shape == (3, 2, 3)
    assert convs[1].conv_shape == (3, 2, 4) and convs[1].out_shape == (1, 1, 4)
    assert dense == [4, 6]
    assert widths(parse("2x7x5,conv3x5:same,pool2,conv4x3:same,pool2,6")) == [70, 18, 4, 6]


def test_the_parameter_count_is_the_networks():
    for spec in (NIELSEN, "2x8x6,conv3x3:same,pool2,conv4x3,5,3", "1x5x5,conv2x5,2"):
        assert ConvNet(parse(spec), dtype="float64").params.size == n_params(parse(spec))


@pytest.mark.parametrize("spec,message", [
    ("1x8x8,10,conv3x3,4", "conv3x3 comes after a fully connected layer"),
    ("1x8x8,10,pool2,4", "pool2 comes after a fully connected layer"),
    ("pool2,conv3x3,10", "the first layer is the input, .* not 'pool2'"),
    ("1x8x8,pool2,10", "pool2 must follow a conv layer"),
    ("1x8x8,conv3x3,pool2,pool2,10", "pool2 must follow a conv layer"),
    ("1x4x4,conv2x5,3", "conv2x5: a 5x5 kernel does not fit the 4x4 maps"),
    ("1x8x8,conv2x3,pool2,conv2x4,3", "conv2x4: a 4x4 kernel does not fit the 3x3 maps"),
    ("1x6x4,conv2x5,3", "conv2x5: a 5x5 kernel does not fit the 6x4 maps"),
    ("1x8x8,conv2x4:same,3", "conv2x4:same: .* odd"),
    ("1x8x8,conv0x3,3", "conv0x3: filters and kernel must be positive"),
    ("1x8x8,conv2x0,3", "conv2x0: filters and kernel must be positive"),
    ("64,conv2x3,3", "conv2x3 needs an image input"),
    ("1x8x8,conv2x3,pool2", "the last layer must be the output's width"),
    ("1x8x8,conv2x3", "the last layer must be the output's width"),
    ("1x8x8,conv2x3,pool7,3", "pool7: a 7x7 window does not fit the 6x6 maps"),
    ("1x8x8,conv2x3,pool0,3", "pool0: a 0x0 window"),
    ("1x8x8,conv2x3,1x4x4,3", "1x4x4 can only be the first layer"),
    ("0x8x8,conv2x3,3", "image shape 0x8x8 must be positive"),
    ("1x8x8,conv2x3,0", "layer widths must be positive, got 0"),
    ("1x8x8", "needs an input and an output layer, got '1x8x8'"),
    ("1x8x8,dense5,3", "'dense5' is not a layer"),
])
def test_a_spec_that_cannot_be_built_is_named_in_one_line(spec, message):
    with pytest.raises(SpecError, match=message) as caught:
        plan(parse(spec))
    assert "\n" not in str(caught.value)
    with pytest.raises(SpecError):  # the network refuses it too
        ConvNet(parse(spec))


@pytest.mark.parametrize("spec", [
    "1x4x4,conv2x4,3",  # the kernel the map's size: a 1x1 map
    "1x6x4,conv2x4,3",  # ... of the smaller side
    "1x8x8,conv2x3,pool6,3",  # the window the map's size
    "1x3x3,conv2x3:same,3",  # 'same' with the kernel the map's size
    "1x8x8,conv2x1:same,pool2,conv3x2,3",  # k = 1 is odd; an even kernel without padding
    "1x8x8,conv2x3,conv2x3,pool2,3",  # conv after conv, the pool after the second
])
def test_the_boundary_cases_are_accepted(spec):
    convs, _ = plan(parse(spec))
    assert all(min(c.out_shape) >= 1 for c in convs)


def test_a_list_typed_in_python_reads_as_the_same_spec_typed_on_the_command_line():
    """ConvNet(['28x28', ...]) used to end in a TypeError from int(None), and 'Conv2x3'
    was called an input layer."""
    typed = ["6x6", "Conv2x3:valid", "POOL2", 3]
    assert plan(typed) == plan(parse("1x6x6,conv2x3,pool2,3"))
    assert check(typed) == ["1x6x6", "conv2x3", "pool2", 3]
    assert architecture.shape_of("6x6") == (1, 6, 6)
    assert widths(typed) == [36, 8, 3] and n_params(typed) == 2 * 10 + 8 * 3 + 3
    net = ConvNet(typed, dtype="float64")
    assert net.image_shape == (1, 6, 6) and net.params.size == n_params(typed)
