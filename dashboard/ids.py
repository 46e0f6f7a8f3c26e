"""Every component id of the dashboard, in one place (pages import these; tests find elements by them)."""
from __future__ import annotations

# app shell
URL = "url"
NAV = "nav"
NAV_LINK = "nav-link"            # + page name
TICK = "tick"                    # the live-update interval
WHO = "who"                      # the signed-in user, shown in the header
URL_SYNC = "url-sync"            # a clientside callback's dummy output

# the filter bar (map, events, stats)
F_WINDOW = "f-window"
F_SLIDER = "f-slider"
F_RANGE_TEXT = "f-range-text"
F_LABELS = "f-labels"
F_DEVICES = "f-devices"
F_VERIFIED = "f-verified"
F_REVIEWED = "f-reviewed"
F_STATE = "f-state"              # the filter as a URL query string (dcc.Store)

# map page
MAP = "map"
MAP_EVENTS = "map-events"
MAP_ALERTS = "map-alerts"
MAP_DEVICES = "map-devices"
MAP_SUMMARY = "map-summary"
MAP_SELECTED = "map-selected"    # dcc.Store: the selected event pk
MAP_PANEL = "map-panel"
EVENT_MARKER = "ev"              # pattern-matching id type of event/cluster markers

# events page
EV_TABLE = "ev-table"
EV_COUNT = "ev-count"
EV_CSV = "ev-csv"

# event detail page
D_TITLE = "d-title"
D_FACTS = "d-facts"
D_AUDIO = "d-audio"
D_SPECTROGRAM = "d-spectrogram"
D_MAP = "d-map"
D_VERIFICATION = "d-verification"
D_CLASSES = "d-classes"
D_REVIEWER = "d-reviewer"
D_REAL = "d-real"
D_FALSE = "d-false"
D_WRONG = "d-wrong"
D_WRONG_LABEL = "d-wrong-label"
D_REVIEW_MSG = "d-review-msg"
D_REVIEWS = "d-reviews"
D_PK = "d-pk"

# stats page
S_TIMELINE = "s-timeline"
S_AGREEMENT = "s-agreement"
S_FALSE_ALARMS = "s-false-alarms"

# devices page
DEV_TABLE = "dev-table"
DEV_PICK = "dev-pick"
DEV_THRESHOLDS = "dev-thresholds"
DEV_PUSH = "dev-push"
DEV_PUSH_MSG = "dev-push-msg"
DEV_BY = "dev-by"
DEV_HISTORY = "dev-history"
