// Progressive enhancement of the consign pages. Every page works without this
// script. With it, uploads show their progress, the time zone defaults to the
// browser's, and recipient statuses update live from server-sent events.
"use strict";

(function () {
  // Sets the time zone picker to the browser's zone unless the page chose one.
  function defaultTimeZone() {
    var select = document.getElementById("time_zone");
    if (!select || select.dataset.chosen === "true") {
      return;
    }
    var zone;
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (error) {
      return;
    }
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === zone) {
        select.value = zone;
        var zoneLabel = document.getElementById("time_zone_shown");
        if (zoneLabel) {
          zoneLabel.textContent = zone;
        }
        return;
      }
    }
  }

  function showChosenZone(event) {
    if (event.target.id !== "time_zone") {
      return;
    }
    var zoneLabel = document.getElementById("time_zone_shown");
    if (zoneLabel) {
      zoneLabel.textContent = event.target.value;
    }
  }

  // Sends the compose form with XMLHttpRequest, whose upload events report
  // progress, to the same URL and with the same fields as the plain form.
  function uploadWithProgress(event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-upload]")) {
      return;
    }
    event.preventDefault();

    var progress = document.getElementById("upload-progress");
    var text = document.getElementById("upload-text");
    var button = form.querySelector("button[type=submit]");
    if (progress) {
      progress.hidden = false;
      progress.value = 0;
    }
    if (button) {
      button.disabled = true;
    }

    var request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.upload.addEventListener("progress", function (progressEvent) {
      if (!progressEvent.lengthComputable) {
        return;
      }
      var percent = Math.floor((progressEvent.loaded / progressEvent.total) * 100);
      if (progress) {
        progress.value = percent;
      }
      if (text) {
        text.textContent = "Uploading: " + percent + " %";
      }
    });

    request.addEventListener("load", function () {
      var target = new URL(request.responseURL, window.location.href);
      var posted = new URL(form.action, window.location.href);
      if (target.pathname !== posted.pathname) {
        // The server responded with a redirect to the new delivery.
        window.location.assign(target.href);
        return;
      }
      // The server sent the form back with an error: show it in place.
      var page = new DOMParser().parseFromString(request.responseText, "text/html");
      var main = page.querySelector("main");
      if (main) {
        document.querySelector("main").replaceWith(document.adoptNode(main));
        document.title = page.title;
        defaultTimeZone();
        var summary = document.getElementById("error-summary");
        if (summary) {
          summary.focus();
        }
      }
    });

    request.addEventListener("error", function () {
      if (text) {
        text.textContent = "The upload failed: the connection to the server was lost. Submit again.";
      }
      if (button) {
        button.disabled = false;
      }
    });

    if (text) {
      text.textContent = "Uploading: 0 %";
    }
    request.send(new FormData(form));
  }

  // Formats sequencer microseconds as the pages do, such as 2026-12-04 10:00:00 UTC.
  function formatTime(micros) {
    if (micros === null || micros === undefined) {
      return "\u2013";
    }
    var text = new Date(micros / 1000).toISOString();
    return text.slice(0, 10) + " " + text.slice(11, 19) + " UTC";
  }

  function setCells(step, recipient, text) {
    document.querySelectorAll('[data-recipient-' + step + '="' + recipient + '"]')
      .forEach(function (cell) {
        cell.textContent = text;
      });
  }

  // Follows a stream of tracking records and updates each recipient's status.
  function followStatuses(container) {
    var labels = JSON.parse(container.dataset.statusLabels || "{}");
    var source = new EventSource(container.dataset.liveEvents);
    var note = document.getElementById("live-note");
    source.addEventListener("open", function () {
      if (note) {
        note.textContent = "Statuses update live.";
      }
    });
    source.addEventListener("tracking", function (message) {
      var record = JSON.parse(message.data);
      record.recipients.forEach(function (recipient) {
        setCells("notified", recipient.recipient, formatTime(recipient.notified_at));
        setCells("opened", recipient.recipient, formatTime(recipient.opened_at));
        setCells("downloads", recipient.recipient, String(recipient.downloads.length));
      });
      record.summary.recipients.forEach(function (recipient) {
        var cells = container.querySelectorAll(
          '[data-recipient-status="' + recipient.recipient + '"]');
        cells.forEach(function (cell) {
          cell.className = "status status-" + recipient.status;
          cell.textContent = labels[recipient.status] || recipient.status;
        });
      });
    });
    source.addEventListener("error", function () {
      if (note) {
        note.textContent = "Live updates paused; reload the page to see the latest statuses.";
      }
    });
  }

  document.addEventListener("submit", uploadWithProgress);
  document.addEventListener("change", showChosenZone);
  document.addEventListener("DOMContentLoaded", function () {
    defaultTimeZone();
    document.querySelectorAll("[data-live-events]").forEach(followStatuses);
  });
})();
