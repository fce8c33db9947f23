import pytest

from ganforge import PlanError, make_plan
from ganforge.plan import Plan, decompose, nearest_valid, parse_resolution
from ganforge.plan_compare import compare_data, compare_num_ws, compare_plans


def test_parse_resolution_is_w_by_h():
    assert parse_resolution(256) == (256, 256)
    assert parse_resolution("256") == (256, 256)
    assert parse_resolution("512x256") == (256, 512)  # W x H -> (H, W)
    assert parse_resolution((32, 64)) == (32, 64)
    with pytest.raises(PlanError, match="WxH"):
        parse_resolution("big")


@pytest.mark.parametrize(
    "h,w,base",
    [
        (4, 4, (4, 4, 0)),
        (1024, 1024, (4, 4, 8)),
        (256, 512, (4, 8, 6)),
        (256, 384, (4, 6, 6)),
        (96, 96, (6, 6, 4)),
        (768, 1024, (6, 8, 7)),
        (32, 64, (4, 8, 3)),
    ],
)
def test_decompose(h, w, base):
    assert decompose(h, w) == base


@pytest.mark.parametrize("res", ["100", "3", "1000x10", "1023"])
def test_invalid_resolution_names_nearest_sizes(res):
    with pytest.raises(PlanError) as e:
        make_plan("tiny", res)
    msg = str(e.value)
    assert "not base·2^k" in msg and "nearest valid sizes:" in msg
    # The suggestions are themselves valid.
    h, w = parse_resolution(res)
    for hh, ww in nearest_valid(h, w):
        make_plan("tiny", (hh, ww))


def test_nearest_valid_for_100_is_96():
    assert nearest_valid(100, 100)[0] == (96, 96)


def test_channels_official_formula():
    plan = make_plan("config-f", 1024)
    assert plan.channels == (512, 512, 512, 512, 512, 256, 128, 64, 32)
    assert plan.block_names[0] == "b4" and plan.block_names[-1] == "b1024"
    assert plan.num_ws == 18
    assert make_plan("paper256", 256).channels == (512, 512, 512, 512, 256, 128, 64)


def test_non_square_blocks_named_h_by_w():
    plan = make_plan("tiny", "512x256")  # 512 wide, 256 tall
    assert (plan.height, plan.width) == (256, 512)
    assert plan.block_names[0] == "b4x8" and plan.block_names[-1] == "b256x512"
    assert plan.shape == [3, 256, 512]


def test_explicit_channel_table_and_its_error():
    plan = make_plan("tiny", 32, channel_table={4: 16, 8: 16, 16: 8, 32: 4})
    assert plan.channels == (16, 16, 8, 4)
    with pytest.raises(PlanError, match="no entry for resolution 32"):
        make_plan("tiny", 32, channel_table={4: 16, 8: 16, 16: 8})


def test_num_ws_every_power_of_two():
    for k in range(0, 9):
        plan = make_plan("config-f", 4 * 2**k)
        assert plan.num_ws == 2 * (k + 1)


def test_fp16_blocks_are_top_blocks_but_never_base():
    plan = make_plan("config-f", 1024)  # num_fp16_res 4
    assert [plan.fp16_block(i) for i in range(plan.num_blocks)] == [False] * 5 + [True] * 4
    small = make_plan("config-f", 8, num_fp16_res=4)
    assert [small.fp16_block(i) for i in range(small.num_blocks)] == [False, True]


def test_unknown_override_and_bad_choice():
    with pytest.raises(PlanError, match="unknown model option"):
        make_plan("tiny", 32, colour=3)
    with pytest.raises(PlanError, match="g_architecture='deep'"):
        make_plan("tiny", 32, g_architecture="deep")
    with pytest.raises(PlanError, match="unknown model preset 'huge'"):
        make_plan("huge", 32)


def test_noconst_needs_even_base():
    make_plan("tiny", 32, g_input="noconst")
    with pytest.raises(PlanError, match="even sides"):
        make_plan("tiny", 80, g_input="noconst")  # base 5x5


def test_plan_round_trips_through_dict():
    plan = make_plan("tiny", "64x32", c_dim=3)
    assert Plan.from_dict(plan.to_dict()) == plan


def test_compare_data_sentences():
    plan = make_plan("config-f", 1024)
    rep = compare_data(plan, [3, 512, 512])
    assert not rep.ok
    text = str(rep)
    assert "512x512" in text and "1024x1024" in text and "--resolution 1024x1024" in text
    rep = compare_data(plan, [1, 1024, 1024], c_dim=5)
    assert {m.what for m in rep.mismatches} == {"channels", "labels"}
    assert compare_data(plan, [3, 1024, 1024]).ok


def test_compare_plans_explains_resolution_and_num_ws():
    ckpt = make_plan("config-f", 512)
    model = make_plan("config-f", 1024)
    rep = compare_plans(ckpt, model)
    assert "512x512 with 16 ws" in str(rep) and "1024x1024 with 18 ws" in str(rep)
    assert "ganforge transfer" in str(rep)
    rep = compare_plans(make_plan("config-f", 1024), make_plan("XL", 1024))
    assert rep.mismatches[0].what == "channels"
    assert compare_plans(model, model).ok
    assert "needs 18" in str(compare_num_ws(model, 16))
