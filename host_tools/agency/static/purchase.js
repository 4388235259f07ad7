// Follows a purchase to "credited": asks /purchases/<id>/status every 1.5 s until the state is final.
(function () {
  var box = document.getElementById("purchase");
  if (!box) return;
  var url = box.getAttribute("data-status");
  var order = ["pending", "paid", "vended", "credited"];
  function show(v) {
    box.setAttribute("data-state", v.state);
    document.getElementById("state").textContent = v.label;
    var items = box.querySelectorAll(".steps li");
    for (var i = 0; i < items.length; i++) {
      if (v.step >= order.indexOf(items[i].getAttribute("data-step"))) items[i].className = "done";
    }
    if (v.token) {
      document.getElementById("token").textContent = v.token;
      document.getElementById("token-box").hidden = false;
      document.getElementById("receipt-link").hidden = false;
    }
    if (v.meter_credit) {
      document.getElementById("meter-credit").textContent = v.meter_credit;
      document.getElementById("credit-after").hidden = false;
    }
  }
  function poll() {
    fetch(url, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (v) {
      show(v);
      if (!v.done) setTimeout(poll, 1500);
    }).catch(function () { setTimeout(poll, 3000); });
  }
  if (["credited", "failed", "refunded"].indexOf(box.getAttribute("data-state")) < 0) poll();
})();
