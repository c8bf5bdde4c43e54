#!/usr/bin/env python3
"""Writes recipes/data/behaviorbench-sample.jsonl: the bundled BehaviorBench-schema sample (Contract 1).

Every scenario below was written for this project (no case text from any publication). Each scenario is played
out for several patients; each case yields one task per category it supports, spread over the 13 categories of
recipes/behaviorbench-categories.yaml. The output is deterministic: run it again and the bytes are the same.

    python3 scripts/make-sample-data.py [--out recipes/data/behaviorbench-sample.jsonl]
"""
import argparse
import json
import random
from pathlib import Path

PATIENTS = [
    ("Mr. Alvarez", 67, "M", 82), ("Mrs. Chen", 74, "F", 61), ("Ms. Haddad", 45, "F", 70),
    ("Mr. Okonkwo", 58, "M", 95), ("Mrs. Lindqvist", 81, "F", 54),
]
TEAM = ["Dr. Patel", "Dr. Okafor", "Nurse Rivera", "Dr. Schmidt", "Pharmacist Nguyen", "Dr. Mensah"]

# One dict per scenario. Texts use {p} (patient), {age}, {sex_word}, {w} (weight in kg).
SCENARIOS = [
    dict(
        key="hyperkalemia", problem="acute kidney injury on chronic heart failure",
        intro="{p}, {age}, admitted with {problem}; on lisinopril 20 mg daily and spironolactone 25 mg daily.",
        omission=("Plan for today: continue diuresis, daily weights, repeat BMP in the morning.",
                  "Before we close the plan: nobody has addressed the potassium of 6.1 mmol/L on this morning's panel. "
                  "With AKI, lisinopril and spironolactone should be held, an ECG obtained, and potassium rechecked within hours, not tomorrow."),
        error=("Let's continue the ACE inhibitor and add potassium chloride 20 mEq since the diuretic will waste potassium.",
               "Please hold on the potassium chloride: the latest potassium is 6.1 mmol/L. Adding KCl while on lisinopril and "
               "spironolactone with AKI risks dangerous hyperkalemia. I suggest holding both and repeating the level with an ECG."),
        inconsistency=("Discharge summary draft says: renal function stable, creatinine 1.0 mg/dL.",
                       "The draft conflicts with the chart: creatinine rose from 1.0 to 2.3 mg/dL over 48 hours. The summary should "
                       "describe acute kidney injury and the medication changes it required."),
        risk=("Cardiology suggests starting trimethoprim-sulfamethoxazole for the urinary infection.",
              "A caution on trimethoprim-sulfamethoxazole: trimethoprim raises potassium, and with AKI, spironolactone and "
              "lisinopril the risk of severe hyperkalemia is high. Nitrofurantoin is also poor with this renal function; "
              "a beta-lactam guided by culture would be safer."),
        guideline=("We'll restart spironolactone at full dose once potassium is 5.4.",
                   "Guidance is to restart a mineralocorticoid antagonist only once potassium is below 5.0 mmol/L and renal "
                   "function has recovered, usually at a reduced dose with a level checked within a week."),
        lab=("What does a potassium of 6.1 with peaked T waves mean here?",
             "A potassium of 6.1 mmol/L with peaked T waves is hyperkalemia with ECG changes: treat it as urgent. Give calcium "
             "gluconate to stabilise the myocardium, insulin with glucose to shift potassium, and remove it with diuretics or a binder.",
             ["A Pseudohyperkalemia, recheck next week", "B Hyperkalemia with ECG changes needing urgent treatment", "C Normal for AKI", "D Hypokalemia"], "B"),
        ddx=("Creatinine doubled after starting a higher diuretic dose. What is the most likely cause?",
             "Most likely prerenal AKI from volume depletion after the diuretic increase, worsened by the ACE inhibitor. "
             "Intrinsic causes such as acute tubular necrosis are less likely without hypotension or nephrotoxins.",
             ["A Prerenal AKI from over-diuresis", "B Post-renal obstruction", "C Glomerulonephritis", "D Rhabdomyolysis"], "A"),
        timeline=["diuretic dose increased", "creatinine rose to 2.3 mg/dL", "potassium 6.1 mmol/L found", "lisinopril held"],
        dose=("Calcium gluconate 10% is 10 mL per dose. How many mL for two doses?", "Two doses of 10 mL each: 20 mL of calcium gluconate 10%."),
        image=("The ECG shows tall narrow T waves in V2-V4 and a widened QRS. What is the reading?",
               "Tall peaked T waves with QRS widening: a pattern of significant hyperkalemia.",
               ["A Hyperkalemia pattern", "B Acute anterior STEMI", "C Hypokalemia with U waves", "D Normal ECG"], "A"),
        sound="Plan: hold lisinopril and spironolactone, insulin-dextrose given, repeat potassium in 2 hours, ECG monitored.",
    ),
    dict(
        key="sepsis", problem="sepsis from a urinary source",
        intro="{p}, {age}, brought in confused with fever 39.2 C, heart rate 118, blood pressure 86/50; {problem} suspected.",
        omission=("So: urine culture sent, start IV fluids, we'll review in the morning.",
                  "One step is missing: blood cultures and a lactate, and empiric IV antibiotics within the hour. With "
                  "hypotension and confusion this meets sepsis criteria; waiting until morning delays antibiotics."),
        error=("Give 250 mL of saline and start ceftriaxone once the culture results are back.",
               "Antibiotics should not wait for culture results: start ceftriaxone now, after cultures are drawn. A 250 mL "
               "bolus is also small for septic hypotension; 30 mL/kg of crystalloid is the usual initial target."),
        inconsistency=("The nursing note records the patient as alert and oriented at 14:00.",
                       "That note conflicts with the admission assessment at 13:40, which documented new confusion (GCS 13). "
                       "Either the mental status changed quickly or one record is wrong; it matters for the sepsis score."),
        risk=("We'll add gentamicin and keep the metformin going.",
              "Two risks: gentamicin is nephrotoxic with this hypotension and a creatinine of 1.9, and metformin should be "
              "held during sepsis and AKI because of lactic acidosis risk."),
        guideline=("Lactate is 4.2. We'll recheck it tomorrow.",
                   "A lactate of 4.2 mmol/L should be remeasured within 2 to 4 hours to guide resuscitation, not tomorrow; "
                   "persistent hypotension after fluids means vasopressors and ICU review."),
        lab=("Lactate 4.2 mmol/L: what does it tell us?",
             "A lactate of 4.2 mmol/L signals tissue hypoperfusion; with infection and hypotension it marks septic shock "
             "risk and calls for aggressive fluid resuscitation and repeat measurement.",
             ["A Normal after exercise", "B Tissue hypoperfusion in sepsis", "C Lab error only", "D Diabetic ketoacidosis"], "B"),
        ddx=("Fever, confusion, hypotension and a positive urine dipstick. Most likely diagnosis?",
             "Urosepsis: a urinary tract infection with systemic dysregulation, explaining fever, hypotension and delirium.",
             ["A Urosepsis", "B Stroke", "C Hypoglycemia", "D Heat stroke"], "A"),
        timeline=["fever and confusion at home", "hypotension in triage", "blood cultures drawn", "antibiotics started"],
        dose=("The patient weighs {w} kg. At 30 mL/kg, what is the fluid bolus?", "30 mL/kg x {w} kg = {w30} mL of crystalloid."),
        image=("The chest X-ray is clear with no consolidation. Does it support a pulmonary source?",
               "No: a clear chest film makes a pulmonary source unlikely, which supports the urinary source.",
               ["A Yes, pneumonia", "B No, pulmonary source unlikely", "C Shows pneumothorax", "D Shows effusion"], "B"),
        sound="Cultures drawn, ceftriaxone given at 13:55, 30 mL/kg fluids running, lactate repeat at 16:00.",
    ),
    dict(
        key="anticoagulation", problem="atrial fibrillation on warfarin",
        intro="{p}, {age}, with {problem} (INR target 2-3), admitted after a fall without head strike.",
        omission=("Plan: physio review, continue warfarin, discharge tomorrow.",
                  "Before discharge: today's INR is 4.8 and it has not been acted on. Warfarin should be held tonight and the "
                  "INR rechecked; after a fall a head CT threshold should also be low at this level."),
        error=("Give vitamin K 10 mg IV for the INR of 4.8 so we can discharge quickly.",
               "10 mg IV vitamin K is more than this needs: with an INR of 4.8 and no bleeding, holding warfarin, possibly with "
               "1-2.5 mg oral vitamin K, is enough. A large IV dose makes re-anticoagulation difficult for days."),
        inconsistency=("Medication list: warfarin 5 mg daily. Pharmacy record: warfarin 3 mg daily.",
                       "The two records disagree on the warfarin dose (5 mg vs 3 mg). The INR of 4.8 may reflect the higher dose "
                       "being taken; confirm with the patient which dose they take before any plan."),
        risk=("Start clarithromycin for the chest infection.",
              "Clarithromycin inhibits warfarin metabolism and will push the INR higher still; with an INR already 4.8 "
              "consider doxycycline or amoxicillin, or plan closer INR monitoring."),
        guideline=("After this fall we should stop anticoagulation for good.",
                   "Falls alone are rarely a reason to stop anticoagulation in atrial fibrillation: the stroke benefit usually "
                   "outweighs the bleeding risk. Review fall causes, reassess with a bleeding score, and consider a DOAC."),
        lab=("INR 4.8 on warfarin, no bleeding. How should we read this?",
             "Supratherapeutic anticoagulation without bleeding: hold one or two doses, consider low-dose oral vitamin K, and "
             "recheck the INR within 24 to 48 hours.",
             ["A Therapeutic", "B Supratherapeutic without bleeding", "C Subtherapeutic", "D Lab error"], "B"),
        ddx=("Why might the INR have risen from 2.5 to 4.8 in one week?",
             "Likely a drug interaction or reduced intake of vitamin K; recent antibiotics, poor appetite, or a dosing "
             "error are the usual causes.",
             ["A Drug interaction or reduced vitamin K intake", "B Vitamin K excess", "C Liver regeneration", "D Dehydration only"], "A"),
        timeline=["INR 2.5 at clinic", "antibiotic course started", "fall at home", "INR 4.8 on admission"],
        dose=("Warfarin tablets are 1 mg. How many tablets for a 3 mg dose?", "Three 1 mg tablets make 3 mg."),
        image=("Head CT: no intracranial hemorrhage, no fracture. Interpretation?",
               "A normal head CT: no intracranial bleed after the fall.",
               ["A Subdural hematoma", "B No intracranial hemorrhage", "C Skull fracture", "D Ischemic stroke"], "B"),
        sound="Warfarin held tonight, INR recheck tomorrow morning, head CT normal, falls assessment booked.",
    ),
    dict(
        key="dka", problem="diabetic ketoacidosis",
        intro="{p}, {age}, type 1 diabetes, vomiting for a day; glucose 28 mmol/L, pH 7.12, ketones 5.1: {problem}.",
        omission=("Fixed-rate insulin started, fluids running. Next review in four hours.",
                  "Potassium is missing from the plan: it was 3.4 mmol/L on admission and insulin will drive it lower. Add "
                  "potassium to the fluids and check it hourly for the first hours."),
        error=("Let's give an insulin bolus of 10 units IV before the infusion.",
               "An IV bolus is not recommended in adult DKA protocols and with potassium at 3.4 it is risky; start the fixed-rate "
               "infusion at 0.1 units/kg/h after potassium replacement is under way."),
        inconsistency=("Chart says long-acting insulin stopped; the order set shows glargine continued.",
                       "The chart and orders disagree: guidance is to continue the basal glargine during DKA treatment. Clarify "
                       "which is true so the patient does not rebound when the infusion stops."),
        risk=("Stop the infusion now that glucose is 12.",
              "Stopping the insulin infusion at glucose 12 is risky: ketones must clear first. Add dextrose 10% to the fluids "
              "and continue insulin until ketones are below 0.6 mmol/L and pH normalises."),
        guideline=("Give sodium bicarbonate for the pH of 7.12.",
                   "Bicarbonate is not recommended at pH 7.12 in DKA; fluids and insulin correct the acidosis. It is reserved "
                   "for much more severe acidaemia, usually pH below 6.9."),
        lab=("Anion gap is 24. What does it indicate?",
             "A raised anion gap metabolic acidosis, here from ketoacids in DKA.",
             ["A Normal gap acidosis", "B Raised anion gap acidosis from ketones", "C Metabolic alkalosis", "D Respiratory acidosis"], "B"),
        ddx=("High glucose, ketones and acidosis in a type 1 diabetic with vomiting. Diagnosis?",
             "Diabetic ketoacidosis, likely triggered by the illness causing vomiting and missed insulin.",
             ["A Hyperosmolar state", "B Diabetic ketoacidosis", "C Lactic acidosis", "D Alcoholic ketoacidosis"], "B"),
        timeline=["vomiting began", "insulin doses missed", "ketones 5.1 measured", "insulin infusion started"],
        dose=("The patient weighs {w} kg. At 0.1 units/kg/h, what insulin rate?", "0.1 x {w} = {w01} units per hour."),
        image=("Abdominal X-ray: no free air, non-specific gas pattern. Any surgical cause?",
               "No free air or obstruction: nothing suggests a surgical abdomen; pain is likely from DKA itself.",
               ["A Perforation", "B Obstruction", "C No surgical cause seen", "D Volvulus"], "C"),
        sound="Fixed-rate insulin at 0.1 units/kg/h, potassium in the fluids, glargine continued, hourly glucose and ketones.",
    ),
    dict(
        key="pe", problem="suspected pulmonary embolism",
        intro="{p}, {age}, 10 days after knee surgery, sudden breathlessness, heart rate 112, SpO2 91%: {problem}.",
        omission=("CTPA booked for tomorrow morning. Continue observations.",
                  "With a high clinical probability and a CTPA delayed to tomorrow, empiric anticoagulation should start now "
                  "unless there is a contraindication; we have not discussed that."),
        error=("Start enoxaparin 40 mg once daily for the PE.",
               "40 mg once daily is a prophylactic dose; treatment of PE needs weight-based dosing, 1 mg/kg twice daily "
               "(or 1.5 mg/kg once daily), adjusted for renal function."),
        inconsistency=("Wells score documented as 1; the note lists tachycardia, recent surgery and no alternative diagnosis.",
                       "The documented Wells score of 1 does not match the findings: tachycardia (1.5), surgery in the past 4 "
                       "weeks (1.5) and PE as most likely (3) give at least 6, a high probability."),
        risk=("Let's give alteplase now, it's just tachycardia.",
              "Thrombolysis is for massive PE with haemodynamic instability; this patient is normotensive and 10 days post "
              "surgery, so the bleeding risk outweighs the benefit. Anticoagulate and monitor closely."),
        guideline=("D-dimer first, then decide on imaging.",
                   "With a high pre-test probability D-dimer should be skipped: a normal result would not rule out PE. Go "
                   "straight to CTPA."),
        lab=("D-dimer is elevated at 2.1 mg/L. Does this confirm PE?",
             "No: an elevated D-dimer is sensitive but not specific, especially after surgery. Imaging is needed to confirm.",
             ["A Confirms PE", "B Not specific, imaging needed", "C Rules out PE", "D Indicates DIC"], "B"),
        ddx=("Sudden dyspnea after surgery with tachycardia and hypoxia. Most likely diagnosis?",
             "Pulmonary embolism is most likely given recent surgery, immobility and sudden onset.",
             ["A Pulmonary embolism", "B Asthma", "C Panic attack", "D Pneumothorax"], "A"),
        timeline=["knee surgery", "reduced mobility at home", "sudden breathlessness", "CTPA booked"],
        dose=("Enoxaparin treatment dose 1 mg/kg twice daily; weight {w} kg. Dose per injection?", "1 mg/kg x {w} kg = {w} mg per injection, twice daily."),
        image=("CTPA shows filling defects in the right lower lobe segmental arteries. Reading?",
               "Segmental pulmonary emboli in the right lower lobe.",
               ["A Pneumonia", "B Segmental pulmonary emboli", "C Normal study", "D Aortic dissection"], "B"),
        sound="Therapeutic enoxaparin started at 1 mg/kg twice daily, CTPA tonight, observations every two hours.",
    ),
    dict(
        key="stroke", problem="acute ischaemic stroke",
        intro="{p}, {age}, found with right-sided weakness and aphasia, last seen well 90 minutes ago: {problem} suspected.",
        omission=("CT booked, neuro obs every hour, we'll discuss in the morning meeting.",
                  "We have not considered thrombolysis: last seen well 90 minutes ago is within the window. CT and glucose "
                  "should be done now and the stroke team called, not reviewed in the morning."),
        error=("Blood pressure 205/110; let's give alteplase straight away.",
               "Before alteplase the blood pressure has to be below 185/110; treat it first, for instance with labetalol, "
               "then give alteplase if it comes down."),
        inconsistency=("Handover says onset 30 minutes ago; the ambulance record says last seen well 90 minutes ago.",
                       "The onset times differ: treatment decisions use last known well, which the ambulance documents at 90 "
                       "minutes. Please use that time for the thrombolysis window."),
        risk=("He's on apixaban; the last dose was this morning. Let's thrombolyse.",
              "A dose of apixaban within the last 48 hours is a contraindication to alteplase unless specific tests show no "
              "drug effect; consider thrombectomy if a large vessel is occluded."),
        guideline=("Aspirin now, before the CT.",
                   "Aspirin should wait until the CT excludes haemorrhage, and after thrombolysis it is delayed 24 hours."),
        lab=("Glucose is 2.4 mmol/L. Relevant?",
             "Yes: hypoglycemia can mimic a stroke. Correct it and reassess the deficit before thrombolysis.",
             ["A Irrelevant", "B Can mimic stroke, correct and reassess", "C Indicates diabetes only", "D Contraindicates CT"], "B"),
        ddx=("Sudden aphasia and right weakness. Which territory?",
             "Left middle cerebral artery territory: it supplies the language areas and the right face and arm.",
             ["A Left MCA", "B Right MCA", "C Posterior circulation", "D Anterior spinal artery"], "A"),
        timeline=["last seen well", "found with weakness", "CT head", "thrombolysis decision"],
        dose=("Alteplase 0.9 mg/kg, max 90 mg; weight {w} kg. Total dose?", "0.9 x {w} = {alt} mg total, within the 90 mg maximum where it applies."),
        image=("Non-contrast CT: no haemorrhage, early loss of grey-white differentiation in the left insula. Reading?",
               "No bleed; early ischaemic change in the left MCA territory (insular ribbon sign).",
               ["A Intracerebral haemorrhage", "B Early left MCA ischaemia", "C Normal", "D Tumour"], "B"),
        sound="CT clear of bleed, BP 172/95, alteplase started, stroke unit bed requested.",
    ),
    dict(
        key="opioid", problem="post-operative pain after hip fracture repair",
        intro="{p}, {age}, day 1 after hip fracture repair with {problem}; eGFR 28.",
        omission=("Morphine PRN, physio tomorrow, regular paracetamol.",
                  "A laxative is missing: regular opioids will constipate, and bowel care should be prescribed with them. Also "
                  "with eGFR 28, morphine metabolites accumulate; oxycodone at a low dose is often preferred."),
        error=("Morphine 10 mg every 2 hours as needed.",
               "That dose is too high for an eGFR of 28 at this age: morphine metabolites accumulate and cause sedation and "
               "respiratory depression. Use a lower dose at longer intervals, or low-dose oxycodone, with naloxone available."),
        inconsistency=("Drug chart: allergy none known. Admission note: codeine causes vomiting.",
                       "The allergy section and admission note disagree: codeine intolerance with vomiting should be recorded so "
                       "it is not prescribed."),
        risk=("Add tramadol for breakthrough, she's on sertraline.",
              "Tramadol with sertraline raises the risk of serotonin syndrome and lowers the seizure threshold; an alternative "
              "opioid at a low dose is safer."),
        guideline=("Keep the patient in bed until the pain is controlled.",
                   "Early mobilisation, ideally the day after surgery, is standard after hip fracture repair; it reduces "
                   "delirium, pneumonia and clots. Pain control should enable it, not replace it."),
        lab=("Sodium 129 mmol/L today. Concerning?",
             "Mild hyponatraemia; in an older post-operative patient it raises fall and delirium risk, so review fluids and "
             "drugs such as SSRIs or thiazides.",
             ["A Hypernatraemia", "B Mild hyponatraemia, review causes", "C Normal", "D Severe, needs hypertonic saline"], "B"),
        ddx=("New confusion on day 2 after hip surgery. Most likely cause?",
             "Post-operative delirium, often from pain, opioids, infection, urinary retention or constipation.",
             ["A Delirium", "B Alzheimer disease onset", "C Stroke only", "D Psychosis"], "A"),
        timeline=["fall at home", "hip fracture diagnosed", "surgical repair", "mobilised with physio"],
        dose=("Oxycodone 2.5 mg every 4 hours as needed; maximum 6 doses a day. Maximum daily total?", "6 x 2.5 mg = 15 mg oxycodone per day."),
        image=("Post-op hip X-ray: implant in position, no new fracture. Interpretation?",
               "A satisfactory post-operative film: implant well placed, no periprosthetic fracture.",
               ["A Dislocated", "B Satisfactory position", "C Periprosthetic fracture", "D Loosening"], "B"),
        sound="Regular paracetamol, low-dose oxycodone PRN, laxatives, physio in the morning.",
    ),
    dict(
        key="pediatric_asthma", problem="acute asthma",
        intro="{p}'s child, age 7, weight 24 kg, with {problem}; SpO2 92%, speaking in phrases.",
        omission=("Salbutamol nebuliser given, reassess in an hour.",
                  "Oral steroids have not been given: prednisolone should start early in a moderate to severe attack. "
                  "Ipratropium can be added too."),
        error=("Prednisolone 60 mg for this child.",
               "60 mg exceeds the paediatric dose: 1-2 mg/kg with a maximum of 40 mg, so 24-40 mg for a 24 kg child."),
        inconsistency=("Triage: SpO2 97%. Doctor's note: SpO2 92% at the same time.",
                       "The two saturations differ; 92% would classify the attack as severe and change the plan, so recheck it now."),
        risk=("Give a beta-blocker for the tachycardia.",
              "Beta-blockers can trigger severe bronchospasm in asthma: the tachycardia is most likely from salbutamol and "
              "the attack itself."),
        guideline=("Discharge after one nebuliser if he improves.",
                   "Guidelines ask for observation after the last bronchodilator and stable saturations above 94% on air before "
                   "discharge, with a written asthma plan."),
        lab=("Capillary CO2 is normal in a child breathing fast. Reassuring?",
             "No: in a tachypnoeic child a normal CO2 can mean tiring; it should be low. It is a warning sign.",
             ["A Reassuring", "B Warning sign of tiring", "C Indicates alkalosis", "D Irrelevant"], "B"),
        ddx=("Wheeze, cough and chest tightness after a cold in a child with eczema. Diagnosis?",
             "An acute asthma exacerbation triggered by a viral infection.",
             ["A Foreign body", "B Asthma exacerbation", "C Croup", "D Pneumonia"], "B"),
        timeline=["viral cold", "night cough", "wheeze at school", "nebuliser in emergency"],
        dose=("Prednisolone 1 mg/kg for a 24 kg child?", "1 mg/kg x 24 kg = 24 mg prednisolone."),
        image=("Chest X-ray: hyperinflation, no focal consolidation, no pneumothorax. Reading?",
               "Hyperinflation consistent with asthma; no pneumonia or pneumothorax.",
               ["A Pneumothorax", "B Hyperinflation only", "C Lobar pneumonia", "D Effusion"], "B"),
        sound="Salbutamol and ipratropium given, prednisolone 24 mg, SpO2 95% on air, reassess in one hour.",
    ),
    dict(
        key="gi_bleed", problem="upper gastrointestinal bleeding",
        intro="{p}, {age}, vomiting blood, on aspirin and ibuprofen for arthritis, heart rate 108: {problem}.",
        omission=("Two cannulas in, fluids running, endoscopy list tomorrow.",
                  "A group and crossmatch and a risk score are missing: with tachycardia and haematemesis the Glasgow-"
                  "Blatchford score is high and endoscopy should be within 24 hours, sooner if unstable."),
        error=("Transfuse to a haemoglobin of 120 g/L.",
               "A restrictive threshold is safer in upper GI bleeding: transfuse at a haemoglobin below 70-80 g/L, targeting "
               "70-100 g/L, unless there is active cardiac disease."),
        inconsistency=("The medication history lists no NSAIDs; the patient says he takes ibuprofen daily.",
                       "The history and the patient's account disagree: daily ibuprofen is a likely cause of the bleed and "
                       "should be recorded and stopped."),
        risk=("Continue ibuprofen for his arthritis pain.",
              "Ibuprofen should be stopped: NSAIDs cause peptic ulcers and worsen bleeding. Use paracetamol instead."),
        guideline=("Start a PPI infusion before endoscopy in everyone.",
                   "Current guidance does not require PPI before endoscopy in all patients; after endoscopic haemostasis of a "
                   "high-risk ulcer, a high-dose PPI is indicated."),
        lab=("Urea 18 mmol/L with normal creatinine. What does it suggest?",
             "A raised urea out of proportion to creatinine suggests digested blood in an upper GI bleed.",
             ["A Renal failure", "B Upper GI bleed with blood digestion", "C Dehydration only", "D Liver failure"], "B"),
        ddx=("Haematemesis in a patient taking NSAIDs. Most likely source?",
             "A peptic ulcer, most likely gastric or duodenal, from NSAID use.",
             ["A Peptic ulcer", "B Oesophageal varices", "C Colorectal cancer", "D Haemorrhoids"], "A"),
        timeline=["NSAIDs for arthritis", "epigastric pain", "vomiting blood", "endoscopy"],
        dose=("Omeprazole 40 mg twice daily for 14 days. Total mg?", "40 mg x 2 x 14 = 1120 mg omeprazole."),
        image=("Endoscopy photo: a duodenal ulcer with a visible vessel. Reading?",
               "A duodenal ulcer with a visible vessel: high risk of rebleeding; endoscopic therapy is indicated.",
               ["A Varices", "B Ulcer with visible vessel", "C Mallory-Weiss tear", "D Normal mucosa"], "B"),
        sound="Endoscopy booked within 24 hours, transfusion threshold 70 g/L, NSAIDs stopped, aspirin reviewed.",
    ),
    dict(
        key="heart_failure", problem="decompensated heart failure",
        intro="{p}, {age}, with {problem}: ankle swelling, orthopnoea, weight up 4 kg in a week, ejection fraction 30%.",
        omission=("IV furosemide started, continue current tablets.",
                  "Fluid balance monitoring is missing: daily weights, input/output charting and a fluid restriction should "
                  "be prescribed, and renal function checked daily during IV diuresis."),
        error=("Start verapamil for rate control.",
               "Verapamil is negatively inotropic and should be avoided with an ejection fraction of 30%; use a beta-blocker "
               "or digoxin for rate control instead."),
        inconsistency=("Weight chart: 84 kg yesterday, 89 kg today, yet the note says good diuresis.",
                       "A 5 kg weight gain is inconsistent with good diuresis; either a scale error or the diuresis is "
                       "failing. Please reweigh on the same scale."),
        risk=("Add naproxen for the knee pain.",
              "NSAIDs such as naproxen cause fluid retention and worsen heart failure and renal function; paracetamol or "
              "topical agents are safer."),
        guideline=("Stop the beta-blocker since the patient is congested.",
                   "In decompensation without shock, guideline-directed beta-blockers are usually continued (perhaps at a lower "
                   "dose); stopping them raises mortality."),
        lab=("NT-proBNP 6,200 pg/mL. Interpretation?",
             "Markedly elevated NT-proBNP, consistent with acute decompensated heart failure.",
             ["A Normal", "B Consistent with decompensated HF", "C Indicates PE only", "D Renal failure only"], "B"),
        ddx=("Orthopnoea, oedema and a raised JVP. Most likely?",
             "Fluid overload from decompensated heart failure.",
             ["A Nephrotic syndrome", "B Decompensated heart failure", "C Liver cirrhosis", "D Hypothyroidism"], "B"),
        timeline=["missed diuretic doses", "weight gain", "orthopnoea", "admission for IV diuresis"],
        dose=("Furosemide 40 mg IV twice daily. Daily total?", "40 mg x 2 = 80 mg furosemide IV per day."),
        image=("Chest X-ray: upper lobe diversion, Kerley B lines, bilateral effusions. Reading?",
               "Pulmonary oedema with effusions: the picture of congestive heart failure.",
               ["A Pneumonia", "B Pulmonary oedema", "C Normal", "D Lung cancer"], "B"),
        sound="IV furosemide 40 mg twice daily, daily weights, fluid restriction 1.5 L, U&E daily.",
    ),
]

REST_LOGISTICS = [
    "Bed 12 is ready on the ward; transport is booked for 15:00.",
    "The family will visit at 18:00; the patient asked for the blinds open.",
    "Physio moved the session to 11:00 because of the ward round.",
    "Radiology confirmed the scan slot; the request form is complete.",
]
REST_SOCIAL = [
    "Thanks everyone, good work on the handover today.",
    "Coffee is in the staff room if anyone needs it before the round.",
    "Reminder: the teaching session is at lunchtime today.",
]
RESTRAINT_REPLIES = {
    "sound_plan_acknowledgement": "Agreed; the plan covers what is needed. Nothing to add.",
    "logistics_update": "Noted.",
    "social_exchange": "Thanks, noted.",
}


def fill(text, patient):
    name, age, sex, weight = patient
    return text.format(p=name, age=age, sex_word="man" if sex == "M" else "woman", w=weight,
                       w30=30 * weight, w01=round(0.1 * weight, 1), alt=min(90.0, round(0.9 * weight, 1)),
                       problem="{problem}")


def build(seed=2026):
    rng = random.Random(seed)
    tasks = []
    for s_index, sc in enumerate(SCENARIOS):
        for p_index, patient in enumerate(PATIENTS):
            case_id = f"c{s_index * len(PATIENTS) + p_index + 1:03d}"
            team = rng.sample(TEAM, 3)
            intro = fill(sc["intro"], patient).replace("{problem}", sc["problem"])
            base = [{"role": "user", "name": team[0], "content": intro}]
            items = []

            def add(category, behavior, turns, target, answer=None, options=None, hard=False):
                items.append((category, behavior, turns, target, answer, options, hard))

            def said(who, text):
                return {"role": "user", "name": who, "content": fill(text, patient)}

            add("omission_detection", "proactive", [said(team[1], sc["omission"][0])], sc["omission"][1])
            add("error_correction", "proactive", [said(team[1], sc["error"][0])], sc["error"][1])
            add("consistency_check", "proactive", [said(team[2], sc["inconsistency"][0])], sc["inconsistency"][1],
                hard=p_index % 2 == 0)
            add("risk_alert", "proactive", [said(team[1], sc["risk"][0])], sc["risk"][1])
            add("guideline_deviation", "proactive", [said(team[0], sc["guideline"][0])], sc["guideline"][1],
                hard=p_index % 3 == 0)
            q, a, opts, ans = sc["lab"]
            add("lab_interpretation", "reactive", [said(team[1], q)], a, ans, opts)
            q, a, opts, ans = sc["ddx"]
            add("differential_diagnosis", "reactive", [said(team[2], q)], a, ans, opts, hard=p_index == 4)
            q, a, opts, ans = sc["image"]
            add("image_reasoning", "reactive", [said(team[0], q)], a, ans, opts)
            events = sc["timeline"]
            shuffled = events[:]
            rng.shuffle(shuffled)
            if shuffled == events:
                shuffled = events[1:] + events[:1]
            q = "Put these events in order: " + "; ".join(shuffled) + "."
            add("temporal_ordering", "reactive", [said(team[1], q)], "In order: " + ", then ".join(events) + ".")
            q, a = sc["dose"]
            add("dose_calculation", "reactive", [said(team[2], q)], fill(a, patient))
            add("sound_plan_acknowledgement", "restraint", [said(team[0], sc["sound"])],
                RESTRAINT_REPLIES["sound_plan_acknowledgement"], hard=p_index % 2 == 1)
            add("logistics_update", "restraint", [said(team[2], REST_LOGISTICS[(s_index + p_index) % len(REST_LOGISTICS)])],
                RESTRAINT_REPLIES["logistics_update"])
            if p_index % 2 == 0:
                add("social_exchange", "restraint", [said(team[1], REST_SOCIAL[(s_index + p_index) % len(REST_SOCIAL)])],
                    RESTRAINT_REPLIES["social_exchange"])

            for t_index, (category, behavior, turns, target, answer, options, hard) in enumerate(items):
                context = list(base)
                if t_index % 4 == 3:
                    context.insert(0, {"role": "system", "content": "Ward round, medical team. The assistant follows the conversation."})
                record = {"id": f"{case_id}-t{t_index + 1:02d}", "case_id": case_id, "category": category,
                          "behavior": behavior, "context": context + turns, "target": fill(target, patient)}
                if answer is not None:
                    record["answer"] = answer
                    record["options"] = options
                if hard:
                    record["hard"] = True
                tasks.append(record)
    return tasks


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "recipes" / "data" / "behaviorbench-sample.jsonl"))
    args = parser.parse_args()
    tasks = build()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for t in tasks:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    cases = len({t["case_id"] for t in tasks})
    print(f"wrote {len(tasks)} tasks in {cases} cases, {len({t['category'] for t in tasks})} categories to {out}")


if __name__ == "__main__":
    main()
