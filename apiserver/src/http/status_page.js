// The public status page's live updates (served as /status-page.js; the page itself is rendered
// by the server, apiserver/src/http/status_public.rs). It listens to /status/{slug}/stream and
// redraws the banner, the components, their bars and the incidents from each `status` event.
(function () {
  "use strict";
  var slug = document.body.getAttribute("data-slug");
  if (!slug || !window.EventSource) return;
  var LABEL = { operational: "Operational", degraded: "Degraded", down: "Down" };
  var HEADLINE = { operational: "All systems operational", degraded: "Some systems degraded", down: "Outage" };

  function utc(ms) {
    return new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function component(c) {
    var li = el("li", "component");
    li.setAttribute("data-component", c.name);
    li.setAttribute("data-status", c.status);
    var head = el("div", "head");
    head.appendChild(el("span", "name", c.name));
    head.appendChild(el("span", "state " + c.status, LABEL[c.status]));
    li.appendChild(head);
    var bars = el("div", "bars");
    c.history.forEach(function (day) {
      var bar = el("span", "bar " + (day.status || "none"));
      bar.title = day.date + ": " + (day.status || "no data");
      bars.appendChild(bar);
    });
    li.appendChild(bars);
    var legend = el("div", "legend");
    legend.appendChild(el("span", "", c.history.length + " days ago"));
    legend.appendChild(el("span", "", "Today"));
    li.appendChild(legend);
    return li;
  }

  function incident(i) {
    var li = el("li", "incident");
    li.setAttribute("data-status", i.status);
    li.appendChild(el("strong", "", i.component));
    li.appendChild(document.createTextNode(" " + i.status));
    var until = i.resolved_at === null ? "ongoing" : "resolved " + utc(i.resolved_at);
    li.appendChild(el("div", "when", utc(i.started_at) + " · " + until));
    return li;
  }

  function draw(page) {
    var overall = document.getElementById("overall");
    overall.className = "banner " + page.status;
    overall.setAttribute("data-status", page.status);
    overall.textContent = HEADLINE[page.status];
    document.getElementById("components").replaceChildren.apply(
      document.getElementById("components"),
      page.components.map(component)
    );
    var incidents = page.incidents.map(incident);
    if (incidents.length === 0) incidents = [el("li", "none", "No incidents in the last 90 days.")];
    var list = document.getElementById("incidents");
    list.replaceChildren.apply(list, incidents);
  }

  var live = document.getElementById("live");
  var source = new EventSource("/status/" + encodeURIComponent(slug) + "/stream");
  source.addEventListener("status", function (event) {
    draw(JSON.parse(event.data));
    live.textContent = "Live";
    document.body.setAttribute("data-live", "true");
  });
  source.addEventListener("gone", function () {
    source.close();
    live.textContent = "This page was removed";
  });
  source.onerror = function () {
    live.textContent = "Reconnecting…";
    document.body.setAttribute("data-live", "false");
  };
})();
