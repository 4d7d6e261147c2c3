"""The web inbox in a real browser (Debian's Chromium), against the real binary: signing in,
live arrival of checkpoints sent by signed webhook, deciding, and decisions made elsewhere."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from conftest import ADMIN_KEY, Server, shot, sign_in

REPORT = {
    "summary": "## Draft reply to **ACME Corp**\n\nThe customer asked about *refund timing*.\n\n"
               "- Refund approved for order `#4411`\n- Credit note issued\n\n"
               "> Keep the tone friendly.\n\nSee [policy](https://example.com/policy).",
    "confidence": 0.82,
    "sources": [{"title": "Ticket 4411", "url": "https://support.example.com/4411"}],
    "risky": False,
}


def test_a_bad_key_shows_a_clear_message_and_nothing_is_stored(page: Page, server: Server) -> None:
    ingest_key = server.create_key("sender", "ingest")
    page.goto(server.base + "/")
    expect(page.get_by_role("heading", name="Sign in to the review inbox")).to_be_visible()
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Enter an API key.")

    page.get_by_label("API key").fill("hhk_this-key-does-not-exist")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("This API key was not recognised")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    shot(page, "01-sign-in-bad-key")

    page.get_by_label("API key").fill(ingest_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("cannot review")
    assert page.evaluate("sessionStorage.length") == 0
    assert page.evaluate("localStorage.length") == 0


def test_sign_in_then_a_webhook_checkpoint_appears_live(page: Page, server: Server) -> None:
    reviewer = server.create_key("rita", "reviewer")
    sign_in(page, server, reviewer, name="Ada Lovelace")
    expect(page.get_by_role("heading", name="All caught up")).to_be_visible()
    expect(page.locator("#whoami")).to_contain_text("Ada Lovelace")
    # The key is in this tab's sessionStorage only: never in localStorage or a cookie.
    assert page.evaluate("sessionStorage.getItem('hitlhook.key')") == reviewer
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    shot(page, "02-empty-inbox")

    server.send_checkpoint("cp-draft", "kick-acme", REPORT, name="review_customer_reply",
                           expires_in=900, on_timeout="stop")
    row = page.locator("#list button.item", has_text="Review customer reply")
    expect(row).to_be_visible()
    expect(page.locator("#pending-count")).to_have_text("1")
    expect(row.locator(".countdown")).to_contain_text(re.compile(r"expires in 1[45]m"))
    row.click()

    detail = page.locator("#detail-pane")
    expect(detail.get_by_role("heading", name="Review customer reply")).to_be_visible()
    # Markdown rendered as structure, and JSON as a tree.
    expect(detail.locator(".md h4")).to_have_text("Draft reply to ACME Corp")
    expect(detail.locator(".md strong").first).to_have_text("ACME Corp")
    expect(detail.locator(".md li")).to_have_count(2)
    expect(detail.locator(".md blockquote")).to_have_text("Keep the tone friendly.")
    link = detail.locator(".md a", has_text="policy")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(detail.locator(".json-node summary").first).to_contain_text("1 item")
    expect(detail.locator(".timeline .event")).to_have_count(1)
    shot(page, "03-checkpoint-detail")
    page.emulate_media(color_scheme="dark")
    shot(page, "03b-checkpoint-detail-dark")
    page.emulate_media(color_scheme="light")

    detail.get_by_role("button", name="Raw JSON").click()
    expect(detail.locator(".raw-json")).to_contain_text('"confidence": 0.82')


def test_untrusted_context_is_shown_as_text_never_run(page: Page, server: Server) -> None:
    reviewer = server.create_key("rita", "reviewer")
    sign_in(page, server, reviewer)
    page.evaluate("window.hitlPwned = false")
    hostile = {
        "note": "<img src=x onerror=\"window.hitlPwned=true\"> **bold** [x](javascript:window.hitlPwned=true)",
        "<script>window.hitlPwned=true</script>": "<b>tag</b>",
    }
    server.send_checkpoint("cp-xss", "kick-x", hostile)
    page.locator("#list button.item").first.click()
    detail = page.locator("#detail-pane")
    expect(detail.locator(".context-fields")).to_contain_text('<img src=x onerror="window.hitlPwned=true">')
    expect(detail.locator(".context-fields")).to_contain_text("<b>tag</b>")
    assert detail.locator("img, script, b").count() == 0
    assert detail.locator("a[href^='javascript']").count() == 0
    assert page.evaluate("window.hitlPwned") is False


def test_revise_needs_feedback_and_records_who_decided(page: Page, server: Server) -> None:
    reviewer = server.create_key("rita", "reviewer")
    server.send_checkpoint("cp-1", "kick-1", REPORT)
    server.send_checkpoint("cp-2", "kick-1", {"plan": "1. research\n2. write"}, name="approve_plan")
    sign_in(page, server, reviewer, name="Ada Lovelace")
    expect(page.locator("#pending-count")).to_have_text("2")
    page.locator("#list button.item", has_text="Review draft").click()

    decision = page.locator(".decision-card")
    decision.get_by_role("button", name="Revise").click()
    expect(decision.get_by_role("alert")).to_contain_text("Write what the agent should change")
    expect(decision.get_by_label("Feedback to the agent")).to_be_focused()
    decision.get_by_label("Feedback to the agent").fill("Mention the credit note amount.")
    decision.get_by_role("button", name="Revise").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Send back for revision?")
    expect(dialog).to_contain_text("Mention the credit note amount.")
    shot(page, "04-confirm-revise")
    dialog.get_by_role("button", name="Revise").click()

    expect(page.locator("#toasts")).to_contain_text("Revise: Review draft")
    expect(page.locator("#list button.item", has_text="Review draft")).to_have_count(0)
    expect(page.locator("#pending-count")).to_have_text("1")

    status, cp = server.request("GET", "/v1/checkpoints/cp-1")
    assert status == 200
    assert cp["status"] == "decided"
    assert cp["decision"]["action"] == "revise"
    assert cp["decision"]["feedback"] == "Mention the credit note amount."
    assert cp["decision"]["decided_by"] == "Ada Lovelace"
    assert cp["decision"]["channel"] == "inbox"
    # The audit trail also keeps which key made the request.
    status, events = server.request("GET", "/v1/executions/kick-1/events")
    decided = [e for e in events["items"] if e["event_type"] == "checkpoint.decided"]
    assert [e["source"] for e in decided] == ["key:rita"]

    # Keyboard only: the next item is selected; c then Enter continues it.
    expect(page.locator("#detail-pane h2")).to_have_text("Approve plan")
    page.locator("body").press("c")
    expect(page.get_by_role("dialog")).to_contain_text("Continue?")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="All caught up")).to_be_visible()
    status, cp2 = server.request("GET", "/v1/checkpoints/cp-2")
    assert cp2["decision"]["action"] == "continue"
    assert cp2["decision"]["decided_by"] == "Ada Lovelace"

    page.get_by_role("link", name="Decided").click()
    expect(page.locator("#list button.item")).to_have_count(2)
    page.locator("#list button.item", has_text="Review draft").click()
    expect(page.locator(".outcome")).to_contain_text("Revise by Ada Lovelace via inbox")
    shot(page, "05-decided-view")


def test_a_decision_made_elsewhere_leaves_the_list_live(page: Page, server: Server) -> None:
    reviewer = server.create_key("rita", "reviewer")
    server.send_checkpoint("cp-a", "kick-9", REPORT)
    server.send_checkpoint("cp-b", "kick-9", {"question": "Publish the post?"}, name="publish")
    sign_in(page, server, reviewer)
    page.locator("#list button.item", has_text="Review draft").click()
    page.locator(".decision-card textarea").fill("half-written thought")

    status, _ = server.request("POST", "/v1/checkpoints/cp-a/decision", {
        "action": "continue", "decided_by": "bob@example.com", "channel": "teams"})
    assert status == 200

    expect(page.locator("#list button.item", has_text="Review draft")).to_have_count(0)
    expect(page.locator("#pending-count")).to_have_text("1")
    outcome = page.locator(".outcome")
    expect(outcome).to_contain_text("Continue by bob@example.com via teams")
    expect(page.locator(".decision-card")).to_have_count(0)
    expect(page.locator("#toasts")).to_contain_text("decided: Continue by bob@example.com via teams")
    expect(page.locator(".timeline .event")).to_have_count(3)
    shot(page, "06-decided-elsewhere")

    # Deciding something already decided elsewhere says who won instead of failing silently.
    page.locator("#list button.item", has_text="Publish").click()
    server.request("POST", "/v1/checkpoints/cp-b/decision", {"action": "stop", "decided_by": "carol"})
    expect(page.locator(".outcome")).to_contain_text("Stop by carol via api")


def test_reconnects_after_a_restart_without_losing_events(page: Page, server: Server) -> None:
    reviewer = server.create_key("rita", "reviewer")
    sign_in(page, server, reviewer)
    server.restart()
    # Until the page reconnects, the events below are only in the store: replay must bring them.
    server.send_checkpoint("cp-r1", "kick-r", {"step": "one"}, name="after_restart")
    server.request("POST", "/v1/checkpoints/cp-r1/decision", {"action": "skip", "decided_by": "dan"})
    server.send_checkpoint("cp-r2", "kick-r", {"step": "two"}, name="second_after_restart")
    expect(page.locator("#live-status[data-state=live]")).to_be_visible(timeout=20_000)
    expect(page.locator("#list button.item", has_text="Second after restart")).to_be_visible()
    expect(page.locator("#list button.item", has_text=re.compile(r"^After restart"))).to_have_count(0)
    expect(page.locator("#pending-count")).to_have_text("1")


def test_sign_out_forgets_the_key(page: Page, server: Server) -> None:
    sign_in(page, server, ADMIN_KEY)
    expect(page.locator("#whoami")).to_contain_text("WEBHOOK_API_KEY")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to the review inbox")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(page.get_by_role("heading", name="Sign in to the review inbox")).to_be_visible()


def test_the_inbox_is_served_with_a_strict_policy_and_works_on_a_phone(page: Page, server: Server) -> None:
    response = page.goto(server.base + "/")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    reviewer = server.create_key("rita", "reviewer")
    server.send_checkpoint("cp-m", "kick-m", REPORT, name="review_on_the_go", expires_in=45)
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, server, reviewer)
    row = page.locator("#list button.item", has_text="Review on the go")
    expect(row.locator(".countdown")).to_have_attribute("data-urgency", "critical")
    shot(page, "07-phone-list")
    row.click()
    expect(page.get_by_role("button", name="Back to the list")).to_be_visible()
    shot(page, "08-phone-detail")
    page.get_by_role("button", name="Back to the list").click()
    expect(row).to_be_visible()


def test_an_execution_shows_its_whole_audit_trail(page: Page, server: Server) -> None:
    reviewer = server.create_key("rita", "reviewer")
    server.send_checkpoint("cp-e1", "kick-audit", {"plan": "Research, then write"}, name="approve_plan")
    server.request("POST", "/v1/checkpoints/cp-e1/decision",
                   {"action": "revise", "feedback": "Add a **budget** section", "decided_by": "erin"})
    server.send_checkpoint("cp-e2", "kick-audit", {"plan": "Research, budget, write"}, name="approve_plan_v2")
    sign_in(page, server, reviewer)
    page.get_by_role("link", name="Executions").click()
    page.locator("#list button.item", has_text="kick-audit").click()
    detail = page.locator("#detail-pane")
    expect(detail.get_by_role("heading", name="kick-audit")).to_be_visible()
    events = detail.locator(".timeline .event")
    expect(events).to_have_count(3)
    expect(events.nth(1)).to_contain_text("Revise by erin via api")
    # Live: a decision made now is appended to the open audit trail.
    server.request("POST", "/v1/checkpoints/cp-e2/decision", {"action": "continue", "decided_by": "frank"})
    expect(events).to_have_count(4)
    expect(events.nth(3)).to_contain_text("Continue by frank via api")
    expect(detail.locator(".badge").first).to_have_text("Running")
    events.nth(1).locator("summary").first.click()
    expect(events.nth(1).locator(".event-payload")).to_contain_text("budget")
    shot(page, "09-execution-audit-trail")


def test_a_very_long_queue_says_that_more_are_waiting(page: Page, server: Server) -> None:
    # One more than the inbox loads at once (PENDING_MOST in inbox/api.js), in batches.
    for start in range(0, 5001, 1000):
        events = [{"event_type": "checkpoint.required", "event_id": f"bulk-{n}",
                   "checkpoint_id": f"bulk-{n}", "checkpoint_name": "bulk_review",
                   "kickoff_id": f"bulk-run-{n % 7}", "context": {"n": n}}
                  for n in range(start, min(start + 1000, 5001))]
        status, body = server.request("POST", "/webhook/crewai", {"events": events})
        assert status == 200, body
    sign_in(page, server, ADMIN_KEY)
    expect(page.locator("#pending-count")).to_have_text("5000+", timeout=20_000)
    expect(page.locator("#list-summary")).to_contain_text("more are waiting: the oldest 5,000 are loaded")
    shot(page, "10-more-waiting")
