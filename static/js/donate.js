// The payment page with real Stripe keys: Stripe.js mounts the Payment Element on the
// organisation's connected account and confirms the payment; Stripe then sends the donor
// to the thanks page (return_url). The form stays disabled while Stripe is confirming.
(function () {
  "use strict";
  var form = document.getElementById("payment-form");
  if (!form || typeof window.Stripe !== "function") {
    return;
  }
  var button = document.getElementById("pay-button");
  var message = document.getElementById("payment-message");
  var stripe = window.Stripe(form.dataset.publishableKey, {stripeAccount: form.dataset.account});
  var elements = stripe.elements({clientSecret: form.dataset.clientSecret});
  var payment = elements.create("payment");

  function busy(on, text) {
    button.disabled = on;
    if (on) {
      form.setAttribute("aria-busy", "true");
    } else {
      form.removeAttribute("aria-busy");
    }
    message.textContent = text || "";
  }

  payment.on("ready", function () { busy(false); });
  payment.mount("#payment-element");

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    busy(true, "Confirming your payment with Stripe…");
    stripe.confirmPayment({
      elements: elements,
      confirmParams: {return_url: form.dataset.returnUrl}
    }).then(function (result) {
      // Only reached when Stripe could not confirm: otherwise the browser is on its way.
      if (result.error) {
        busy(false, result.error.message);
        message.focus();
      }
    });
  });
}());
