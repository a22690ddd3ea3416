"""A report of an undertrained tiny run: the banner, the at-a-glance box, the verdicts, and
the layer that ``auto`` chose is the layer the figures show."""

from __future__ import annotations

import html as html_lib
import json
from pathlib import Path

from latentcam.cli import main
from latentcam.report.build import factor_rows
from latentcam.report.trust import MIN_STEPS, merge_glances, read_glance
from latentcam.verdicts import correlation_verdict, verdict


def test_an_undertrained_run_says_so_and_shows_auto_s_layer(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "rep"
    argv = ["report", str(runs["vae"]), "--out", str(out), "--n", "2", "--eval-n", "16"]
    assert main(argv) == 0
    page = html_lib.unescape((out / "index.html").read_text())
    m = json.loads((out / "metrics.json").read_text())
    steps = json.loads((runs["vae"] / "metrics.json").read_text())["global_step"]
    assert steps < MIN_STEPS  # the tiny recipe trains 6 steps
    # the banner and the box open the page, before the first section
    first_section = page.index("<section")
    assert page.index("Undertrained: do not read these results") < first_section
    assert f"Only {steps} training steps (fewer than {MIN_STEPS})" in page
    assert page.index("At a glance") < first_section
    assert f"latentcam train --config {runs['vae'] / 'config.yaml'} --max-steps 2000" in page
    box = read_glance(out)
    assert box.banner and box.banner[0].startswith(f"Only {steps} training steps")
    assert merge_glances({"vae": box}).banner[0].startswith("vae: Only")
    # the layer auto chose is the layer shown: in the subtitle and in every figure's text
    auto = m["localisation"]["auto"]
    assert f"explained layer {auto['layer']} (chosen by auto" in page
    assert f"{auto['method']} of every latent unit at {auto['layer']}" in page  # Fig. 9
    assert f"by KL, at {auto['layer']} ({auto['method']})" in page  # Figs. 13-16
    # the verdicts of the shown layer, computed from metrics.json by the one function
    row = next(
        r
        for r in m["localisation"]["comparison"]
        if (r["layer"], r["method"]) == (auto["layer"], auto["method"])
    )
    judged = verdict(row["pointing_game"], row["chance"])
    assert f"against chance {row['chance']:.2f}: <b>{judged.text}</b>" in page
    assert f"(chance 0): <b>{correlation_verdict(row['spearman_cam_effect']).text}</b>" in page
    assert any(
        text in page
        for text in (
            "at chance: this heatmap does not show where the unit acts",
            "below chance",
            "× chance",
        )
    )


def test_factor_rows_say_whether_each_factor_lands_on_its_part() -> None:
    factors = [
        {"factor": "smile", "unit": 3, "normalised_mi": 0.4, "regions": ["mouth"],
         "energy_in_part": 0.2, "pointing_game": 0.05, "chance": 0.11, "lands_on_part": False,
         "per_layer": {"b2": {"energy_in_part": 0.3, "pointing_game": 0.341, "chance": 0.11}}},
        {"factor": "yaw", "unit": 1, "normalised_mi": 0.2},
    ]  # fmt: skip
    at_paper = factor_rows(factors)
    assert at_paper[0]["lands on its part?"].text == "below chance"
    assert at_paper[0]["regions"] == "mouth" and "per_layer" not in at_paper[0]
    assert at_paper[1]["lands on its part?"].text == "not scored"
    at_b2 = factor_rows(factors, "b2", "gradcam")
    assert at_b2[0]["pointing_game"] == 0.341
    assert at_b2[0]["lands on its part?"].text == "3.1× chance"


def test_cvae_strips_are_named_by_attribute(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rep"
    argv = ["report", str(runs["cvae"]), "--out", str(out), "--n", "2", "--eval-n", "16"]
    assert main([*argv, "--layer", "default"]) == 0
    page = (out / "index.html").read_text()
    assert "Smiling from 0 to 1 (attr_Smiling.png)" in page
    assert (out / "traverse" / "attributes" / "attr_Smiling.gif").is_file()
    assert "attr_15" not in page
    m = json.loads((out / "metrics.json").read_text())
    for scores in m.get("attribute_control", {}).get("per_attribute", {}).values():
        assert 0.0 <= scores["unedited_rate"] <= 1.0  # the flip rate's chance level


def test_demo_index_opens_with_every_run_s_glance(tmp_path: Path) -> None:
    from latentcam.demo import write_index
    from latentcam.report.trust import Glance, write_glance

    boxes = {
        "vae": Glance(
            trust=["sanity check: passes"],
            doubt=["heatmaps at b2 (pointing game vs chance): below chance"],
            command="latentcam train --config vae/config.yaml --max-steps 2000 --out vae-longer",
            advice="train longer",
            banner=["Only 20 training steps (fewer than 500): a smoke run"],
        ),
        "segvae": Glance(trust=["heatmaps at b1 (pointing game vs chance): 2.9× chance"]),
    }
    summary = []
    for name, box in boxes.items():
        folder = tmp_path / name / "report"
        folder.mkdir(parents=True)
        write_glance(box, folder)
        summary.append({"run": name, "steps": 20, "report": folder / "index.html"})
    page = html_lib.unescape(write_index(tmp_path, summary, "test").read_text())
    banner, box = page.index("Undertrained"), page.index("<h2>At a glance</h2>")
    assert banner < box < page.index("<section")
    assert "vae: Only 20 training steps" in page
    assert "vae: heatmaps at b2 (pointing game vs chance): below chance" in page
    assert "segvae: heatmaps at b1 (pointing game vs chance): 2.9× chance" in page
    assert "latentcam train --config vae/config.yaml --max-steps 2000" in page
    assert "undertrained (1 warning)" in page and "every score beats chance" in page
    assert 'href="vae/report/index.html"' in page
